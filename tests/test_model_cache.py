"""The joined Whisper base cache is safe to build while another process reads it."""

from __future__ import annotations

from pathlib import Path

from sidecast.sidecars.stt.engine import check_model_dir, whisper_base_path


def test_a_second_join_replaces_files_instead_of_rewriting_them_in_place(tmp_path: Path) -> None:
    base = whisper_base_path(tmp_path / "cache")
    assert check_model_dir(base) == base
    before = {n: (base / n).stat().st_ino for n in ("config.json", "tokenizer.json", "vocabulary.txt", "model.bin")}
    held = (base / "config.json").open("rb")     # a process that is loading the cache now
    try:
        (base / "model.bin").unlink()               # another process finds it missing and joins again
        assert whisper_base_path(tmp_path / "cache") == base
        after = {n: (base / n).stat().st_ino for n in before}
        assert all(after[n] != before[n] for n in before), f"a file was rewritten in place: {before} {after}"
        assert held.read() == (base / "config.json").read_bytes(), "the reader's file changed under it"
    finally:
        held.close()
    assert not list(base.glob("*.tmp")), "no temporary file is left behind"
    assert check_model_dir(base) == base
