"""Real test media made on this machine: espeak-ng/flite speech, ffmpeg video, Pillow images."""
