"""CTC decoding (decode.py, needs torch), error rates (wer.py) and Phoenix-2014 scoring
(phoenix.py). Import the submodules directly: wer and phoenix stay importable without torch,
which keeps the console quick to open."""
