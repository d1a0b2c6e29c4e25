"""Load statistics: per-request records in, a mergeable state and the run's ``summary.json`` out.

``LoadStats.add`` runs once per request on the generator's hot path, so it does a few dict and list
operations and hands ITLs to a batched histogram (``eyechart.load.histograms``). Only requests of the
measure stage(s) enter the latency histograms, throughput and goodput; every stage is still counted and
drawn in the time series (warmup and cooldown are visible, never averaged in).

Locust's master merges its workers with ``serialize()`` (sent in ``report_to_master``) and
``merge_serialized()`` (in ``worker_report``). Memory is bounded: fixed-size histograms, a time series
whose resolution doubles past ``series_cap`` buckets, a fixed-size reservoir of per-request points (for
the image-bytes-vs-TTFT plot) and a few error examples per class.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from eyechart.load.histograms import ERROR_BOUND, Histogram
from eyechart.load.metrics import COUNT_METRICS, LATENCY_METRICS, METRICS, RUN_METRICS, completion_tokens
from eyechart.load.records import RequestRecord
from eyechart.secrets import is_secret_name

ERROR_CLASSES = ("connect", "timeout", "4xx", "429", "5xx", "disconnect", "malformed", "no_done")
PER_REQUEST_SLO_METRICS = ("ttft", "ttft_sched", "e2e", "tpot", "itl")  # itl: the request's largest gap
PERCENTILES = (50.0, 90.0, 95.0, 99.0)
SUMMARY_SCHEMA_ID = "eyechart/load-summary/2"  # 2: requests offered/sent/completed/failed/incomplete
CENSORED_METRICS = ("ttft", "e2e")
_ERROR_EXAMPLES = 5
_ERROR_TEXT_MAX = 300

# Time-series bucket fields (a list per bucket, for speed and compact JSON).
SERIES_FIELDS = (
    "requests", "ok", "errors", "completion_tokens", "chunks",
    "ttft_sum_ns", "ttft_n", "ttft_max_ns", "e2e_sum_ns", "e2e_n", "e2e_max_ns",
    "measure_ok", "measure_tokens",
)  # fmt: skip
_S = {name: i for i, name in enumerate(SERIES_FIELDS)}


def _new_stage() -> dict[str, Any]:
    return {
        "offered": 0, "requests": 0, "ok": 0, "incomplete": 0, "retried": 0,
        "errors": dict.fromkeys(ERROR_CLASSES, 0),
        "prompt_tokens": 0, "completion_tokens": 0, "images": 0, "chunks": 0,
        "first_send_ns": None, "last_end_ns": None,
    }  # fmt: skip


def _new_measure() -> dict[str, Any]:
    return {
        "offered": 0, "requests": 0, "ok": 0, "incomplete": 0, "retried": 0,
        "errors": dict.fromkeys(ERROR_CLASSES, 0), "good": 0,
        "prompt_tokens": 0, "completion_tokens": 0, "images": 0, "chunks": 0, "tokens_estimated": 0,
        "start_ns": None, "end_ns": None,
    }  # fmt: skip


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


class LoadStats:
    """Aggregates ``RequestRecord``s; see the module docstring for what is kept and why.

    ``slo_per_request``: thresholds in milliseconds by metric (``ttft``, ``ttft_sched``, ``e2e``,
    ``tpot``, ``itl`` = the request's largest ITL); an ok request meeting all of them counts toward
    goodput. ``gates.per_request_slos(parse_slo(...))`` builds it from ``--slo``.
    """

    def __init__(
        self,
        slo_per_request: Mapping[str, float] | None = None,
        *,
        measure_stages: Collection[str] = ("measure",),
        reservoir_size: int = 2000,
        series_cap: int = 3600,
        seed: int | None = None,
    ) -> None:
        slo = dict(slo_per_request or {})
        unknown = set(slo) - set(PER_REQUEST_SLO_METRICS)
        if unknown:
            raise ValueError(f"no per-request SLO for {sorted(unknown)}; known: {PER_REQUEST_SLO_METRICS}")
        self.slo_per_request = slo
        # (derive, limit in ns); derive None: itl, judged on the request's largest gap
        self._slo_ns = [
            (None if name == "itl" else METRICS[name].derive, int(ms * 1e6)) for name, ms in slo.items()
        ]
        self.measure_stages = frozenset(measure_stages)
        self.hists: dict[str, Histogram] = {m: Histogram(divisor=1000) for m in LATENCY_METRICS}
        self.hists.update({m: Histogram() for m in COUNT_METRICS})
        self._derive = [
            (self.hists[m], METRICS[m].derive)
            for m in LATENCY_METRICS + COUNT_METRICS
            if m not in ("itl", "schedule_lag")  # itl: per chunk; schedule_lag: failed requests too
        ]
        self._lag = self.hists["schedule_lag"]
        self._itl = self.hists["itl"]
        self.stages: dict[str, dict[str, Any]] = {}
        self.measure = _new_measure()
        self.series_res_s = 1
        self.series_cap = series_cap
        self.series: dict[int, list[int]] = {}
        self.reservoir_size = reservoir_size
        self.reservoir: list[list[Any]] = []  # [image_bytes, ttft_ms, e2e_ms, chunks, tokens, ok]
        self.reservoir_seen = 0
        self.error_examples: dict[str, list[str]] = {}
        # incomplete requests of the measure stage at their stop time (lower bounds), for the censored view
        self.censored: dict[str, Histogram] = {m: Histogram(divisor=1000) for m in CENSORED_METRICS}
        self._rng = random.Random(seed)

    def offer(self, stage: str, n: int = 1) -> None:
        """Count ``n`` requests the load model meant to send in ``stage`` (sent or not)."""
        st = self.stages.get(stage)
        if st is None:
            st = self.stages[stage] = _new_stage()
        st["offered"] += n
        if stage in self.measure_stages:
            self.measure["offered"] += n

    # -- hot path ------------------------------------------------------------------------------------
    def add(self, rec: RequestRecord, itl_ns: Sequence[int]) -> None:
        """Account one finished request (``itl_ns``: its ITLs in ns, e.g. ``metrics.itl_gaps``)."""
        st = self.stages.get(rec.stage)
        if st is None:
            st = self.stages[rec.stage] = _new_stage()
        ok = rec.error_class is None
        tokens, estimated = completion_tokens(rec)
        end = rec.t_end if rec.t_end is not None else rec.t_send
        st["requests"] += 1
        st["chunks"] += rec.content_chunks
        if rec.retried:
            st["retried"] += 1
        if st["first_send_ns"] is None or rec.t_send < st["first_send_ns"]:
            st["first_send_ns"] = rec.t_send
        if st["last_end_ns"] is None or end > st["last_end_ns"]:
            st["last_end_ns"] = end
        if rec.incomplete:
            st["incomplete"] += 1
        elif ok:
            st["ok"] += 1
            st["prompt_tokens"] += rec.prompt_tokens or 0
            st["completion_tokens"] += tokens or 0
            st["images"] += rec.images
        else:
            st["errors"][rec.error_class] = st["errors"].get(rec.error_class, 0) + 1
            self._error_example(rec)

        key = end // (self.series_res_s * 1_000_000_000)
        b = self.series.get(key)
        if b is None:
            b = self.series[key] = [0] * len(SERIES_FIELDS)
            if len(self.series) > self.series_cap:
                self._coarsen(self.series_res_s * 2)
                b = self.series[end // (self.series_res_s * 1_000_000_000)]
        b[0] += 1
        b[4] += rec.content_chunks
        ttft = e2e = None
        if rec.incomplete:
            pass
        elif ok:
            b[1] += 1
            b[3] += tokens or 0
            if rec.t_first is not None:
                ttft = rec.t_first - rec.t_send
                b[5] += ttft
                b[6] += 1
                if ttft > b[7]:
                    b[7] = ttft
            if rec.t_end is not None:
                e2e = rec.t_end - rec.t_send
                b[8] += e2e
                b[9] += 1
                if e2e > b[10]:
                    b[10] = e2e
        else:
            b[2] += 1

        if rec.stage not in self.measure_stages:
            return
        m = self.measure
        m["requests"] += 1
        m["chunks"] += rec.content_chunks
        m["start_ns"] = rec.t_send if m["start_ns"] is None else min(m["start_ns"], rec.t_send)
        m["end_ns"] = end if m["end_ns"] is None else max(m["end_ns"], end)
        if rec.retried:
            m["retried"] += 1
        if rec.t_sched is not None:
            self._lag.record(max(0, rec.t_send - rec.t_sched))
        if rec.incomplete:
            m["incomplete"] += 1
            self.censored["ttft"].record((rec.t_first if rec.t_first is not None else end) - rec.t_send)
            self.censored["e2e"].record(end - rec.t_send)
            return
        if not ok:
            m["errors"][rec.error_class] = m["errors"].get(rec.error_class, 0) + 1
            return
        m["ok"] += 1
        m["prompt_tokens"] += rec.prompt_tokens or 0
        m["completion_tokens"] += tokens or 0
        m["images"] += rec.images
        if estimated:
            m["tokens_estimated"] += 1
        b[11] += 1
        b[12] += tokens or 0
        for hist, derive in self._derive:
            v = derive(rec)  # type: ignore[misc]
            if v is not None:
                hist.record(v)
        if itl_ns:
            self._itl.record_many(itl_ns)
        good = True
        for derive, limit in self._slo_ns:
            v = (max(itl_ns) if itl_ns else None) if derive is None else derive(rec)
            if v is not None and v > limit:
                good = False
                break
        if good:
            m["good"] += 1
        self.reservoir_seen += 1
        point = [
            rec.image_bytes,
            None if ttft is None else ttft / 1e6,
            None if e2e is None else e2e / 1e6,
            rec.content_chunks,
            tokens,
            rec.case,
        ]
        if len(self.reservoir) < self.reservoir_size:
            self.reservoir.append(point)
        else:
            j = self._rng.randrange(self.reservoir_seen)
            if j < self.reservoir_size:
                self.reservoir[j] = point

    def _error_example(self, rec: RequestRecord) -> None:
        examples = self.error_examples.setdefault(str(rec.error_class), [])
        if len(examples) < _ERROR_EXAMPLES:
            text = f"[{rec.request_id}] {rec.status or '-'} {rec.error or ''}".strip()[:_ERROR_TEXT_MAX]
            if text not in examples:
                examples.append(text)

    def _coarsen(self, res_s: int) -> None:
        """Re-bucket the time series at ``res_s`` seconds per bucket (bounded memory for long runs)."""
        factor = res_s // self.series_res_s
        merged: dict[int, list[int]] = {}
        for key, b in self.series.items():
            into = merged.get(key // factor)
            if into is None:
                merged[key // factor] = list(b)
            else:
                _merge_bucket(into, b)
        self.series = merged
        self.series_res_s = res_s
        if len(self.series) > self.series_cap:
            self._coarsen(res_s * 2)

    # -- shipping between processes ------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        """A JSON-able snapshot (for Locust's ``report_to_master``); does not reset this object."""
        return {
            "version": 1,
            "slo_per_request": self.slo_per_request,
            "hists": {name: h.to_dict() for name, h in self.hists.items()},
            "stages": self.stages,
            "measure": self.measure,
            "series_res_s": self.series_res_s,
            "series": [[k, *b] for k, b in self.series.items()],
            "reservoir": self.reservoir,
            "reservoir_seen": self.reservoir_seen,
            "error_examples": self.error_examples,
            "censored": {name: h.to_dict() for name, h in self.censored.items()},
        }

    def merge_serialized(self, d: Mapping[str, Any]) -> None:
        """Add another process's ``serialize()`` output into this one (Locust's ``worker_report``)."""
        for name, hd in d["hists"].items():
            if name in self.hists:
                self.hists[name].merge(Histogram.from_dict(hd))
        for name, hd in d.get("censored", {}).items():
            if name in self.censored:
                self.censored[name].merge(Histogram.from_dict(hd))
        for name, st in d["stages"].items():
            into = self.stages.setdefault(name, _new_stage())
            _merge_counts(into, st, "first_send_ns", "last_end_ns")
        _merge_counts(self.measure, d["measure"], "start_ns", "end_ns")
        other_res = int(d["series_res_s"])
        if other_res > self.series_res_s:
            self._coarsen(other_res)
        factor = self.series_res_s // other_res
        for key, *bucket in d["series"]:
            mine = self.series.get(key // factor)
            if mine is None:
                self.series[key // factor] = list(bucket)
            else:
                _merge_bucket(mine, bucket)
        if len(self.series) > self.series_cap:
            self._coarsen(self.series_res_s * 2)
        self._merge_reservoir(d["reservoir"], int(d["reservoir_seen"]))
        for cls, examples in d["error_examples"].items():
            have = self.error_examples.setdefault(cls, [])
            have.extend(e for e in examples if e not in have)
            del have[_ERROR_EXAMPLES:]

    def censored_view(self) -> dict[str, Any]:
        """TTFT and E2E quantiles with incomplete requests counted at their stop time (lower bounds:
        each would have taken at least that long), beside the completed-only figures in ``metrics``."""
        n = self.measure["incomplete"]
        out: dict[str, Any] = {
            "incomplete": n,
            "note": "lower bounds: completed requests plus incomplete ones counted at their stop time",
        }
        for name in CENSORED_METRICS:
            h = Histogram(divisor=1000)
            h.merge(self.hists[name])
            h.merge(self.censored[name])
            ps = h.percentiles(PERCENTILES) if h.count else {}
            out[name] = {"count": h.count, **{f"p{int(p)}": (v / 1000.0) for p, v in ps.items()}}
        return out

    def _merge_reservoir(self, other: list[list[Any]], other_seen: int) -> None:
        """Keep a uniform sample of both streams: draw from each side in proportion to what it saw."""
        total = self.reservoir_seen + other_seen
        pool_a, pool_b = list(self.reservoir), list(other)
        self._rng.shuffle(pool_a)
        self._rng.shuffle(pool_b)
        out: list[list[Any]] = []
        while len(out) < self.reservoir_size and (pool_a or pool_b):
            take_a = pool_a and (not pool_b or self._rng.random() < self.reservoir_seen / max(total, 1))
            out.append(pool_a.pop() if take_a else pool_b.pop())
        self.reservoir = out
        self.reservoir_seen = total

    # -- results -------------------------------------------------------------------------------------
    def measure_duration_s(self, run_info: Mapping[str, Any] | None = None) -> float:
        given = (run_info or {}).get("measure_duration_s")
        if given:
            return float(given)
        start: int | None = self.measure["start_ns"]
        end: int | None = self.measure["end_ns"]
        if start is None or end is None:
            return 0.0
        return max(0.0, (end - start) / 1e9)

    def metric_summary(self, name: str) -> dict[str, Any]:
        h = self.hists[name]
        scale = 1000.0 if METRICS[name].kind == "latency" else 1.0  # µs -> ms
        n = h.count
        pcts = [f"p{int(p)}" for p in PERCENTILES]
        out: dict[str, Any] = {"unit": METRICS[name].unit, "count": n}
        if not n:
            return {**out, **dict.fromkeys(["mean", "min", *pcts, "max"])}
        ps = h.percentiles(PERCENTILES)
        out.update(mean=h.mean() / scale, min=h.min() / scale)
        out.update({key: ps[p] / scale for key, p in zip(pcts, PERCENTILES, strict=True)})
        out["max"] = h.max() / scale
        return out

    def throughput_series(self) -> list[dict[str, float]]:
        """Per-bucket measure-stage rates, whole buckets only: samples for throughput's CI."""
        keys = sorted(k for k, b in self.series.items() if b[_S["measure_ok"]])
        res = self.series_res_s
        return [
            {
                "requests_per_s": self.series[k][_S["measure_ok"]] / res,
                "output_tokens_per_s": self.series[k][_S["measure_tokens"]] / res,
            }
            for k in keys[1:-1]
        ]

    def series_rows(self) -> list[dict[str, Any]]:
        """The time series as rows (all stages), for plots: rates per second and latency in ms."""
        if not self.series:
            return []
        res = self.series_res_s
        first = min(self.series)
        rows = []
        for k in range(first, max(self.series) + 1):
            b = self.series.get(k) or [0] * len(SERIES_FIELDS)
            rows.append(
                {
                    "t_s": (k - first) * res,
                    "res_s": res,
                    "requests_per_s": b[_S["ok"]] / res,
                    "errors_per_s": b[_S["errors"]] / res,
                    "output_tokens_per_s": b[_S["completion_tokens"]] / res,
                    "chunks_per_s": b[_S["chunks"]] / res,
                    "ttft_mean_ms": b[_S["ttft_sum_ns"]] / b[_S["ttft_n"]] / 1e6 if b[_S["ttft_n"]] else None,
                    "ttft_max_ms": b[_S["ttft_max_ns"]] / 1e6 if b[_S["ttft_n"]] else None,
                    "e2e_mean_ms": b[_S["e2e_sum_ns"]] / b[_S["e2e_n"]] / 1e6 if b[_S["e2e_n"]] else None,
                    "e2e_max_ms": b[_S["e2e_max_ns"]] / 1e6 if b[_S["e2e_n"]] else None,
                }
            )
        return rows

    def summary(self, run_info: Mapping[str, Any]) -> dict[str, Any]:
        """The ``summary.json`` document (without gates: ``report.load.write_reports`` adds them)."""
        m = self.measure
        duration = self.measure_duration_s(run_info)
        per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
        failed = sum(m["errors"].values())
        sent = m["requests"]
        run = {k: v for k, v in run_info.items() if not is_secret_name(k)}
        return {
            "schema": SUMMARY_SCHEMA_ID,
            "run": run,
            "duration_s": duration,
            "histogram_error_bound": ERROR_BOUND,
            "requests": {
                **_accounting(m),
                "total": sent,  # = sent (schema 1 readers)
                "ok": m["ok"],  # = completed (schema 1 readers)
                "by_stage": {
                    name: {**{k: v for k, v in st.items() if not k.endswith("_ns")}, **_accounting(st)}
                    for name, st in self.stages.items()
                },
                "totals": _accounting(_sum_stages(self.stages.values())),
            },
            "censored": self.censored_view(),
            "metrics": {name: self.metric_summary(name) for name in METRICS},
            "definitions": {
                **{name: f"[{m.unit}] {m.definition}" for name, m in METRICS.items()},
                **RUN_METRICS,
            },
            "throughput": {
                "requests_per_s": per_s(m["ok"]),
                "output_tokens_per_s": per_s(m["completion_tokens"]),
                "total_tokens_per_s": per_s(m["completion_tokens"] + m["prompt_tokens"]),
                "images_per_s": per_s(m["images"]),
                "chunks_per_s": per_s(m["chunks"]),
            },
            "throughput_series": self.throughput_series(),
            "goodput": {
                "requests_per_s": per_s(m["good"]),
                "requests": m["good"],
                "fraction": m["good"] / m["requests"] if m["requests"] else 0.0,
                "slo_per_request_ms": self.slo_per_request,
            },
            "errors": {
                "total": failed,
                "rate": failed / sent if sent else 0.0,
                "by_class": dict(m["errors"]),
                "examples": self.error_examples,
            },
            "tokens_estimated": {"requests": m["tokens_estimated"], "any": m["tokens_estimated"] > 0},
            "gates": [],
            "warnings": [],
        }


def _accounting(st: Mapping[str, Any]) -> dict[str, int]:
    """offered / sent / completed / failed / incomplete, with sent = completed + failed + incomplete."""
    failed = sum(st["errors"].values())
    return {
        "offered": max(int(st.get("offered", 0)), int(st["requests"])),
        "sent": int(st["requests"]),
        "completed": int(st["ok"]),
        "failed": int(failed),
        "incomplete": int(st.get("incomplete", 0)),
        "retried": int(st.get("retried", 0)),
    }


def _sum_stages(stages: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"offered": 0, "requests": 0, "ok": 0, "incomplete": 0, "retried": 0, "errors": {}}
    for st in stages:
        for k in ("offered", "requests", "ok", "incomplete", "retried"):
            out[k] += int(st.get(k, 0))
        for cls, n in st["errors"].items():
            out["errors"][cls] = out["errors"].get(cls, 0) + n
    return out


def _merge_counts(into: dict[str, Any], other: Mapping[str, Any], min_key: str, max_key: str) -> None:
    for k, v in other.items():
        if k == min_key:
            into[k] = _min(into.get(k), v)
        elif k == max_key:
            into[k] = _max(into.get(k), v)
        elif isinstance(v, dict):
            sub = into.setdefault(k, {})
            for ck, cv in v.items():
                sub[ck] = sub.get(ck, 0) + cv
        elif isinstance(v, int | float):
            into[k] = into.get(k, 0) + v


def _merge_bucket(into: list[int], b: Sequence[int]) -> None:
    for i, v in enumerate(b):
        if i in (_S["ttft_max_ns"], _S["e2e_max_ns"]):
            into[i] = max(into[i], v)
        else:
            into[i] += v
