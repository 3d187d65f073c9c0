"""The training loop and checkpoints, shared by every modality."""
