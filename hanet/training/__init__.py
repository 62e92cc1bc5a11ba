"""Training of DeepLabV3+ (HANet): config, distributed set-up, optimisation, losses,
sampling, checkpoints and the loop.  Entry points: `hanet train` and train/train.py."""
