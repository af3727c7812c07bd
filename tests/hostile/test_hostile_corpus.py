"""Walk the hostile corpus (``corpus.py``) through a real gRPC server; what each case must
leave as it was is checked by :func:`runner.check_case`."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from service.jobs.uploads import Uploads

from . import builders as b
from .corpus import CASES, Case
from .runner import HostileServer, check_case


def test_corpus_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_input_is_refused_cleanly(
    case: Case, hostile_servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: HostileServer = hostile_servers(case.trusted)
    check_case(server, case, server_reads=count_server_reads(monkeypatch))


def count_server_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the chunks the server's upload code pulls from a stream, from now on (the
    server runs in this process)."""
    server_reads: list[int] = []
    receive = Uploads.receive

    def counting_receive(
        self: Uploads, header: object, chunks: Iterable[bytes], *args: object, **kwargs: object
    ) -> object:
        def counted() -> Iterator[bytes]:
            for chunk in chunks:
                server_reads.append(len(chunk))
                yield chunk

        return receive(self, header, counted(), *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Uploads, "receive", counting_receive)
    return server_reads


def test_trap_payloads_are_armed(tmp_path: Path) -> None:
    """The payloads really run code when loaded the unsafe way, so the absent markers above
    prove that nothing loaded them."""
    markers = [tmp_path / name for name in ("raw", "zip", "npz")]
    pickle.loads(b.raw_pickle(markers[0]))
    with zipfile.ZipFile(io.BytesIO(b.torch_save_zip(markers[1]))) as archive:
        pickle.loads(archive.read("archive/data.pkl"))
    with np.load(io.BytesIO(b.npz_with_object_array(markers[2])), allow_pickle=True) as data:
        data["x"]
    assert all(marker.exists() for marker in markers)
