"""The driver's MLflow writes during a grid, off Tune's event loop: one thread, an ordered queue, a journal.

Tune's callbacks run in its event loop, which also feeds the scheduler and every
trial; an MLflow call there that waits for a tracking server that is away (MLflow
retries for minutes) would hold every GPU of the cluster. So the callback hands
its writes to `TrackingWriter`, which has the same write methods as `Tracker` and
returns at once:

- Each write is appended to a journal (`ops.jsonl` in the journal folder, the
  files it logs copied beside it) before it is queued, and marked done there once
  MLflow took it. One thread applies them in order; a write that fails for a
  reason that may pass (a server away, a locked database) is retried until it
  goes through, so each is written once and in order. A write MLflow refuses for
  good (a bad value) is said and dropped, so it cannot hold up the rest.
- A run is created by the thread too: `start_run` returns a `RunHandle` at once,
  and later writes to it wait behind its creation in the queue. The created run
  carries the handle's key as a tag, so a creation retried after its answer was
  lost finds the run it made instead of making a second one.
- Metrics keep the time they were logged at, so a retried batch is the same
  batch (MLflow keeps one copy of an identical metric).
- `behind()` says how far the writes lag (the live line and the heartbeat show
  it); `drain()` waits for them, saying why. What is unwritten when the driver is
  stopped stays in the journal, and the next run of the grid writes it first
  (`replay` before anything reads MLflow).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import queue
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.tracking.mlflow_store import Tracker

WRITE_ID = "orchestrator.write_id"  # tag: the RunHandle key a run was created for
LATE_S = 10.0  # a write still pending after this long means tracking is behind
# MLflow's error codes that a retry cannot change: the write is said and dropped
PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
             "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED"}


@dataclass
class RunHandle:
    """A run the writer creates in its turn; `id` is MLflow's run id once it is created."""

    key: str
    id: str | None = None


@dataclass
class Write:
    seq: int
    op: str  # a Tracker method
    args: tuple
    since: float = field(default_factory=time.time)
    replayed: bool = False  # journaled by an earlier driver


class TrackingWriter:
    def __init__(self, tracker: Tracker, journal: Path, retry_s: float = 5.0, max_pending: int = 100_000):
        """`journal`: a local folder for this grid's journal (created); `retry_s`: the wait between retries."""
        self.tracker, self.journal, self.retry_s = tracker, Path(journal), retry_s
        self.journal.mkdir(parents=True, exist_ok=True)
        self.queue: queue.Queue[Write | None] = queue.Queue(max_pending)
        self.lock = threading.Lock()
        self.ids: dict[str, str] = {}  # handle key -> run id
        self.pending: dict[int, Write] = {}
        self.error: str | None = None  # the last failure while behind
        self.seq = 0
        self.stopping = threading.Event()
        self.unjournaled = False  # a journal write failed (said once)
        for write in self._unwritten():  # an earlier driver's, first
            self._queue(write)
        self.thread = threading.Thread(target=self._work, name="mlflow-writer", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ Tracker's writes

    def start_run(self, name: str, role: str, tags: dict[str, str] | None = None, parent_id: Any = None) -> RunHandle:
        handle = RunHandle(uuid.uuid4().hex)
        self._put("start_run", (handle, name, role, tags or {}, parent_id))
        return handle

    def reopen_run(self, run: Any, tags: dict[str, str] | None = None) -> None:
        self._put("reopen_run", (run, tags))

    def end_run(self, run: Any, status: str, tags: dict[str, str] | None = None) -> None:
        self._put("end_run", (run, status, tags))

    def log_params(self, run: Any, params: dict[str, str]) -> None:
        self._put("log_params", (run, params))

    def log_metrics(self, run: Any, metrics: dict[str, float], step: int) -> None:
        self._put("log_metrics", (run, metrics, step, int(time.time() * 1000)))

    def set_tags(self, run: Any, tags: dict[str, str]) -> None:
        self._put("set_tags", (run, tags))

    def describe(self, run: Any, markdown: str) -> None:
        self._put("describe", (run, markdown))

    def log_datasets(self, run: Any, datasets: list[Any]) -> None:
        self._put("log_datasets", (run, datasets))

    def log_text(self, run: Any, text: str, name: str) -> None:
        self._put("log_text", (run, text, name))

    def log_file(self, run: Any, path: str | Path, folder: str | None = None) -> None:
        self._put("log_file", (run, self._keep(Path(path)), folder))

    def log_frames(self, run: Any, frames: dict[str, Any], folder: str | None = None) -> None:
        for name, frame in frames.items():
            kept = self._spool(f"{name}.parquet")
            frame.to_parquet(kept, index=False)
            self._put("log_file", (run, str(kept), folder))

    def log_figure(self, run: Any, figure: Any, name: str) -> None:
        """The figure as PNG now (it may be closed before its turn), logged under `name`'s folder."""
        kept = self._spool(Path(name).name)
        figure.savefig(kept)  # as MlflowClient.log_figure saves it
        self._put("log_file", (run, str(kept), str(Path(name).parent) if "/" in name else None))

    def __reduce__(self):
        """Tune pickles its callbacks with the experiment state (for its Tuner.restore, which this tool does not
        use): the copy is `Detached`, with no thread, queue or lock, only where the journal is."""
        return Detached, (str(self.journal),)

    # ------------------------------------------------------------ state

    def behind(self) -> tuple[int, float] | None:
        """(writes pending, since when: epoch seconds) when the oldest has waited longer than LATE_S; else None."""
        with self.lock:
            if not self.pending:
                return None
            oldest = min(w.since for w in self.pending.values())
            count = len(self.pending)
        return (count, oldest) if time.time() - oldest > LATE_S else None

    def drain(self, say=print, every_s: float = 30.0) -> None:
        """Wait until every write is in MLflow, saying every `every_s` what it waits for (Ctrl-C leaves the rest
        in the journal, for the next run of the grid)."""
        said = 0.0
        while self.pending:
            lag = self.behind()
            if lag and time.monotonic() - said >= every_s:
                said = time.monotonic()
                say(f"tracking: waiting for {lag[0]} MLflow write(s) pending since {time.strftime('%H:%M:%S', time.localtime(lag[1]))}"
                    f" ({self.tracker.uri}{': ' + self.error if self.error else ''}); Ctrl-C leaves them in "
                    f"{self.journal}, which the grid's next run writes first")
            time.sleep(0.05)
        self.compact()

    def close(self) -> None:
        """Stop the thread (after `drain`, nothing is left; otherwise the journal keeps what is)."""
        self.stopping.set()
        self.queue.put(None)
        self.thread.join(timeout=5)

    def compact(self) -> None:
        """Nothing pending: the journal starts empty again (its files are written)."""
        with self.lock:
            if self.pending:
                return
            for path in self.journal.iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    # ------------------------------------------------------------ the thread

    def _work(self) -> None:
        while (write := self.queue.get()) is not None:
            attempt = 0
            while not self._apply(write, attempt):
                attempt += 1
                if self.stopping.wait(self.retry_s):
                    return

    def _apply(self, write: Write, attempt: int) -> bool:
        """Apply one write; False to retry it. Done (or dropped) writes are marked in the journal."""
        try:
            done = {"done": write.seq}
            if write.op == "start_run":
                handle, name, role, tags, parent = write.args
                run_id = (self._made_for(handle) if attempt or write.replayed else None) or self.tracker.start_run(
                    name, role, {**tags, WRITE_ID: handle.key}, self._id(parent))
                handle.id = self.ids[handle.key] = done["run_id"] = run_id
                done["key"] = handle.key
            else:
                getattr(self.tracker, write.op)(*(self._id(a) for a in write.args))
        except Exception as err:  # noqa: BLE001 - sorted below: retried, or said and dropped
            code = getattr(err, "error_code", "")
            if code not in PERMANENT:
                self.error = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                return False
            print(f"tracking: MLflow refused {write.op} ({err}); the write is dropped", file=sys.stderr, flush=True)
        self.error = None
        self._journal(done)
        with self.lock:
            self.pending.pop(write.seq, None)
        for arg in write.args:
            if isinstance(arg, str) and arg.startswith(str(self.journal)):
                Path(arg).unlink(missing_ok=True)
        return True

    def _made_for(self, handle: RunHandle) -> str | None:
        """The run an earlier try of this creation made, if its answer was lost on the way back."""
        found = self.tracker.runs_tagged(WRITE_ID, handle.key)
        return found[0].info.run_id if found else None

    def _id(self, value: Any) -> Any:
        return self.ids.get(value.key, value.id) if isinstance(value, RunHandle) else value

    # ------------------------------------------------------------ the journal

    def _put(self, op: str, args: tuple) -> None:
        with self.lock:
            self.seq += 1
            write = Write(self.seq, op, args)
        self._journal({"seq": write.seq, "op": op, "args": base64.b64encode(pickle.dumps(args)).decode()})
        self._queue(write)

    def _queue(self, write: Write) -> None:
        with self.lock:
            self.pending[write.seq] = write
        self.queue.put(write)

    def _journal(self, entry: dict) -> None:
        """Append to the journal; a journal that cannot be written (a full disk) costs only the kill-safety of
        the writes, which still go to MLflow from memory (said once)."""
        try:
            with self.lock, (self.journal / "ops.jsonl").open("a") as out:
                out.write(json.dumps(entry) + "\n")
        except OSError as err:
            if not self.unjournaled:
                print(f"tracking: cannot write the journal {self.journal} ({err}); the MLflow writes go on from "
                      f"memory, but a kill of the driver now would lose the ones not yet written", file=sys.stderr, flush=True)
            self.unjournaled = True

    def _unwritten(self) -> list[Write]:
        """The writes an earlier driver journaled and MLflow never took, in order; their runs' ids where made."""
        path = self.journal / "ops.jsonl"
        if not path.is_file():
            return []
        writes, done = {}, set()
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if "done" in entry:
                done.add(entry["done"])
                if "key" in entry:
                    self.ids[entry["key"]] = entry["run_id"]
            else:
                args = pickle.loads(base64.b64decode(entry["args"]))
                writes[entry["seq"]] = Write(entry["seq"], entry["op"], args, replayed=True)
        self.seq = max([*writes, *done], default=0)
        return [w for seq, w in sorted(writes.items()) if seq not in done]

    def _spool(self, name: str) -> Path:
        folder = self.journal / "files" / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder / name

    def _keep(self, path: Path) -> str:
        """A copy of a file to log in the journal (the original may go before its turn); a hard link where it can."""
        kept = self._spool(path.name)
        try:
            os.link(path, kept)
        except OSError:
            shutil.copyfile(path, kept)
        return str(kept)


@dataclass(frozen=True)
class Detached:
    """A pickled TrackingWriter: it writes nothing (the journal it names holds what the real one left)."""

    journal: str


def replay(tracker: Tracker, journal: Path, say=print) -> None:
    """Write what an earlier driver of this grid left unwritten (its journal), before anything reads MLflow."""
    if not (Path(journal) / "ops.jsonl").is_file():
        return
    writer = TrackingWriter(tracker, journal)
    if writer.pending:
        say(f"tracking: writing {len(writer.pending)} MLflow write(s) an earlier run of this grid left in {journal} ...")
    writer.drain(say)
    writer.close()
