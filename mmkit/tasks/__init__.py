"""Task heads and steps: classification and contrastive."""
