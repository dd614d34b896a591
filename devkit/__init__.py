"""Development kit: synthetic media, reference metrics and corpora for tests, benchmarks and model training.

Not part of the installed package (``pip install sidecast`` ships none of it): tests, ``bench/`` and
``models/*/`` scripts import it from a checkout, with the repository root on ``sys.path``.

- ``speech``: espeak-ng sentences with known words and onsets (captions tests and bench);
- ``realspeech``: real recorded speech with published transcripts (LibriVox, Asterisk prompts in
  English, Spanish, French; Debian packages), tuning/held-out programmes, parallel text for translation;
- ``scenes``: synthetic scenes with ground-truth subject boxes and the crop metrics (autocrop);
- ``footage``, ``annotate_footage``: real edited footage with cut lists and independent reference boxes
  (autocrop's real-footage bench and tests);
- ``corpus``, ``quality``: the bitrate model's clip corpus, reference encodes and VMAF/PSNR/SSIM.
"""
