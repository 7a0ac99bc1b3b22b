"""The driver's MLflow writes during a grid, off Tune's event loop: one thread, an ordered queue, a journal.

Tune's callbacks run in its event loop, which also feeds the scheduler and every
trial; an MLflow call there that waits for a tracking server that is away (MLflow
retries for minutes) would hold every GPU of the cluster. So the callback hands
its writes to `TrackingWriter`, which has the same write methods as `Tracker` and
returns at once:

- Each write is appended to a journal (`ops.jsonl` in the journal folder, plain
  JSON, the files it logs copied beside it) before it is queued, and marked done
  there once MLflow took it. One thread applies them in order; a write that fails
  the way a server or network does (a connection refused or reset, a timeout, an
  HTTP 5xx or 429, a locked database) is retried until it goes through, so each is
  written once and in order. Any other failure (MLflow refusing a value, a bug, a
  spooled file gone) drops that one write, keeps it in `<journal>.set-aside.jsonl`
  and says so in one line, so it cannot hold up the rest; a journal entry that
  cannot be read back (another release's) is set aside there too.
- A run is created by the thread too: `start_run` returns a `RunHandle` at once,
  and later writes to it wait behind its creation in the queue. The created run
  carries the handle's key as a tag, so a creation retried after its answer was
  lost finds the run it made instead of making a second one.
- Metrics keep the time they were logged at, so a retried batch is the same
  batch (MLflow keeps one copy of an identical metric).
- `behind()` says how far the writes lag (the live line and the heartbeat show
  it); `drain()` waits for them, saying why, and raises the writer thread's error
  if the thread died (it never waits on a dead thread). What is unwritten when the driver is
  stopped stays in the journal, and the next run of the grid writes it first
  (`replay` before anything reads MLflow).
"""

from __future__ import annotations

import contextlib
import json
import os
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
# MLflow's error codes of what a server or network does, which a retry can change (anything else is set aside)
TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "SERVICE_UNDER_MAINTENANCE",
                   "ABORTED"}
# what MLflow's client says (as a plain MlflowException, code INTERNAL_ERROR) when the server or network failed
NETWORK_TEXT = ("API request to", "Max retries exceeded", "Connection", "connection", "timed out", "Timeout",
                "database is locked", "Temporary failure")


def transient(err: BaseException) -> bool:
    """Whether `err` is what a tracking server or the network does (retry it): connection errors, timeouts, HTTP 5xx
    and 429 answers, a locked sqlite database. A deterministic error (a TypeError after a rename, a missing file, a
    value MLflow refuses) is not."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    name, text = type(err).__name__, str(err)
    if name in {"ConnectTimeout", "ReadTimeout", "Timeout", "ConnectionError", "ProtocolError", "MaxRetryError",
                "ChunkedEncodingError", "RemoteDisconnected"}:
        return True
    if name == "OperationalError":  # sqlite under another writer
        return "locked" in text or "busy" in text
    if name == "RestException":  # the server's own answer: its HTTP status says
        status = err.get_http_status_code()
        return status >= 500 or status == 429 or err.error_code in TRANSIENT_CODES
    if name == "MlflowException":
        return err.error_code in TRANSIENT_CODES or any(t in text for t in NETWORK_TEXT)
    return False


def encode(value: Any) -> Any:
    """A write's arguments as plain JSON (runs as handles, dataset inputs as their fields)."""
    from mlflow.entities import DatasetInput

    if isinstance(value, RunHandle):
        return {"__run__": value.key, "id": value.id}
    if isinstance(value, DatasetInput):
        d = value.dataset
        return {"__dataset__": {"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source,
                                "schema": d.schema, "profile": d.profile}, "tags": {t.key: t.value for t in value.tags}}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot journal a {type(value).__name__}")


def decode(value: Any) -> Any:
    """`encode`'s JSON back (lists stay lists: every write takes them as it took the tuples)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict) and "__run__" in value:
        return RunHandle(value["__run__"], value["id"])
    if isinstance(value, dict) and "__dataset__" in value:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        return DatasetInput(Dataset(**value["__dataset__"]), tags=[InputTag(k, v) for k, v in value["tags"].items()])
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    return value


class WriterDied(RuntimeError):
    """The writer thread ended with an error of its own: what was not written is in the journal."""


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
        self.died: BaseException | None = None  # what ended the thread, if it ended by an error
        self.set_aside = self.journal.with_name(f"{self.journal.name}.set-aside.jsonl")
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

    def log_stored_file(self, run: Any, path: str, folder: str | None = None) -> None:
        """A file of the grid's storage, read in the writer's turn (the storage outlives the drain: released after)."""
        self._put("log_stored_file", (run, path, folder))

    def log_confusion(self, run: Any, targets: list[int], predicted: list[int], classes: list[str], top: int, title: str,
                      name: str) -> None:
        """A confusion figure, drawn in the writer's turn."""
        self._put("log_confusion", (run, list(map(int, targets)), list(map(int, predicted)), classes, top, title, name))

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
        in the journal, for the next run of the grid); WriterDied if the thread is gone with writes pending."""
        said = 0.0
        while self.pending:
            if not self.thread.is_alive():
                raise WriterDied(f"the MLflow writer thread stopped ({self.died!r}) with {len(self.pending)} write(s) "
                                 f"unwritten; they stay in {self.journal}, which the grid's next run writes first")
            lag = self.behind()
            if lag and time.monotonic() - said >= every_s:
                said = time.monotonic()
                say(f"tracking: waiting for {lag[0]} MLflow write(s) pending since {time.strftime('%H:%M:%S', time.localtime(lag[1]))}"
                    f" ({self.tracker.uri}{': ' + self.error if self.error else ''}); Ctrl-C leaves them in "
                    f"{self.journal}, which the grid's next run writes first")
            time.sleep(0.05)
        self.compact()

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop the thread (after `drain`, nothing is left; otherwise the journal keeps what is); whether it stopped
        (False: it is still inside an MLflow call after `timeout_s`, a daemon thread the process's exit ends)."""
        self.stopping.set()
        with contextlib.suppress(queue.Full):  # a full queue: the stopping flag ends the thread at its next write
            self.queue.put_nowait(None)
        self.thread.join(timeout=timeout_s)
        return not self.thread.is_alive()

    def compact(self) -> None:
        """Nothing pending: the journal starts empty again (its files are written)."""
        with self.lock:
            if self.pending:
                return
            for path in self.journal.iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    # ------------------------------------------------------------ the thread

    def _work(self) -> None:
        try:
            while not self.stopping.is_set() and (write := self.queue.get()) is not None:
                attempt = 0
                while not self._apply(write, attempt):
                    attempt += 1
                    if self.stopping.wait(self.retry_s):
                        return
        except BaseException as err:
            self.died = err
            raise

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
        except Exception as err:  # noqa: BLE001 - sorted below: retried, or set aside with a line
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
            if transient(err):
                self.error = reason
                return False
            self._set_aside({"seq": write.seq, "op": write.op, "args": self._encoded(write.args), "error": reason})
            print(f"tracking: MLflow write {write.op} failed ({reason}); it is not retried, and is kept in "
                  f"{self.set_aside}; the grid goes on", file=sys.stderr, flush=True)
        self.error = None
        self._journal(done)
        with self.lock:
            self.pending.pop(write.seq, None)
        for arg in write.args:
            if isinstance(arg, str) and arg.startswith(str(self.journal)):
                with contextlib.suppress(OSError):  # a spooled file's cleanup must never end the thread
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
        self._journal({"seq": write.seq, "op": op, "args": encode(args)})
        self._queue(write)

    def _queue(self, write: Write) -> None:
        with self.lock:
            self.pending[write.seq] = write
        self.queue.put(write)

    def _encoded(self, args: tuple) -> Any:
        try:
            return encode(args)
        except TypeError as err:
            return f"(not JSON: {err})"

    def _set_aside(self, entry: dict) -> None:
        """Keep a write that will not be retried, or a journal entry that cannot be read, where people find it."""
        try:
            with self.lock, self.set_aside.open("a") as out:
                out.write(json.dumps(entry, default=str) + "\n")
        except OSError as err:
            print(f"tracking: cannot keep it in {self.set_aside} ({err})", file=sys.stderr, flush=True)

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
        writes, done, unreadable = {}, set(), []
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if "done" in entry:
                done.add(entry["done"])
                if "key" in entry:
                    self.ids[entry["key"]] = entry["run_id"]
                continue
            try:
                if not hasattr(Tracker, entry["op"]) or not isinstance(entry["args"], list):
                    raise ValueError(f"not a write of this release: {entry['op']!r}")
                writes[entry["seq"]] = Write(entry["seq"], entry["op"], tuple(decode(entry["args"])), replayed=True)
            except Exception as err:  # noqa: BLE001 - another release's entry (a pickle, a renamed class): set aside
                unreadable.append({**entry, "error": f"{type(err).__name__}: {err}"} if isinstance(entry, dict) else entry)
        for entry in unreadable:
            self._set_aside(entry)
        if unreadable:
            print(f"tracking: {len(unreadable)} journal entr{'y' if len(unreadable) == 1 else 'ies'} in {path} could not "
                  f"be read (written by another release?); set aside in {self.set_aside}, the grid goes on",
                  file=sys.stderr, flush=True)
        self.seq = max([*writes, *done, *(e.get("seq", 0) for e in unreadable if isinstance(e, dict))], default=0)
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
