"""Media decoding: audio (soundfile), video (imageio-ffmpeg), images (Pillow)."""
