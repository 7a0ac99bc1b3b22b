"""scripts/pack_wheels.py: the parts a device call can carry join back into the bundle, byte for byte."""

from __future__ import annotations

import hashlib
import importlib.util

from tests.conftest import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("pack_wheels", REPO / "scripts" / "pack_wheels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parts_stay_under_the_limit_and_join_back_byte_for_byte(tmp_path):
    pack = load_script()
    data = bytes(range(256)) * 1000 + b"tail"  # 256,004 bytes
    bundle = tmp_path / "wheels.tar"
    bundle.write_bytes(data)
    parts = pack.split_file(bundle, 100_000)
    assert [p.name for p in parts] == ["wheels.tar.part00", "wheels.tar.part01", "wheels.tar.part02"]
    assert all(p.stat().st_size <= 100_000 for p in parts) and not bundle.exists()
    assert pack.join_parts(list(reversed(parts)), tmp_path / "joined.tar") == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "joined.tar").read_bytes() == data
