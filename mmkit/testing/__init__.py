"""Real test media made on this machine: speech (espeak-ng, flite), video (ffmpeg), images (Pillow)."""
