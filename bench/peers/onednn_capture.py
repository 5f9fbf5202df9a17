"""Capturing oneDNN's verbose log from inside a Python peer (shared by torch_gpt.py and torch_matmul_bf16.py).

oneDNN writes its log from C to file descriptor 1, so sys.stdout redirection does not see it: the descriptor
itself is pointed at a temporary file for the duration.
"""
import os
import sys
import tempfile


class CaptureStdout:
    """Capture what C code writes to file descriptor 1 (oneDNN's verbose log goes to stdout)."""

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        self.tmp = tempfile.TemporaryFile(mode='w+b')
        os.dup2(self.tmp.fileno(), 1)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode(errors='replace')
        self.tmp.close()
        return False
