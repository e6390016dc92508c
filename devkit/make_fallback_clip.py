"""Regenerate the apology clip that ships with the daemon (``actors/fallback_clips/``).

Run once, at build time, by a developer (never by CI or the daemon: the clip is committed)::

    apt-get install -y espeak-ng sox
    python -m devkit.make_fallback_clip

It synthesises :data:`APOLOGY_TEXT` with eSpeak NG (voice ``en-us``), resamples it with SoX
to 8 kHz and 16 kHz mono PCM16, and writes:

- ``apology.ulaw``: 8 kHz G.711 μ-law, encoded by the daemon's own codec
  (:func:`actors.audio_codec.pcm16_to_ulaw`), for Twilio and Asterisk ``ulaw``;
- ``apology.sln16``: 16 kHz signed 16-bit little-endian PCM, for Asterisk ``slin16``.

Both are raw audio, named with Asterisk's sound-file extensions. Leading and trailing
silence is trimmed to 50 ms so the caller hears the apology at once.

Licence: the clip is eSpeak NG's output for a sentence written for this project. eSpeak NG
is GPL-3.0-or-later, but the GPL does not extend to a program's output, and the text is
ours: the clip is distributed under the project's licence (Apache-2.0), as the note next to
it (``actors/fallback_clips/README.md``) says. The output is deterministic for a given
eSpeak NG and SoX build; the README records the versions used.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from actors.audio_codec import pcm16_to_ulaw
from actors.fallback_audio import SHIPPED_CLIP_TEXT

APOLOGY_TEXT = SHIPPED_CLIP_TEXT
"""What the shipped clip says."""

CLIPS_DIR = Path(__file__).resolve().parent.parent / "actors" / "fallback_clips"
_KEEP_SILENCE = 0.05
_SILENCE_LEVEL = 64  # PCM16 amplitude below which a sample counts as silence


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def _trim(pcm: bytes, rate: int) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _SILENCE_LEVEL)
    if len(loud) == 0:
        raise SystemExit("synthesis produced only silence")
    keep = int(_KEEP_SILENCE * rate)
    start = max(0, int(loud[0]) - keep)
    end = min(len(samples), int(loud[-1]) + 1 + keep)
    return samples[start:end].astype("<i2").tobytes()


def synthesise(text: str, work: Path) -> dict[int, bytes]:
    """``text`` spoken by eSpeak NG, as trimmed PCM16 at 8 kHz and 16 kHz."""
    wav = work / "speech.wav"
    _run("espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text)
    out: dict[int, bytes] = {}
    for rate in (8000, 16000):
        raw = work / f"speech-{rate}.raw"
        # SoX's "rate" effect (very high quality) anti-aliases the 22.05 kHz original; -D: no
        # dither, so the output is the same bytes on every run.
        _run(
            "sox", str(wav), "-t", "raw", "-r", str(rate), "-c", "1", "-b", "16",
            "-e", "signed-integer", "-L", "-D", str(raw), "rate", "-v",
        )  # fmt: skip
        out[rate] = _trim(raw.read_bytes(), rate)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write ``apology.ulaw`` and ``apology.sln16`` into ``--out`` (the package by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CLIPS_DIR)
    parser.add_argument("--text", default=APOLOGY_TEXT)
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y espeak-ng sox", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp:
        pcm = synthesise(args.text, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "apology.ulaw").write_bytes(pcm16_to_ulaw(pcm[8000]))
    (args.out / "apology.sln16").write_bytes(pcm[16000])
    for name, data, per_second in (
        ("apology.ulaw", pcm[8000], 16000),
        ("apology.sln16", pcm[16000], 32000),
    ):
        print(f"{args.out / name}: {len(data) / per_second:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
