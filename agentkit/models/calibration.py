"""The Runner's online-calibration and re-ISQ methods (mistralrs `begin_calibration`,
`calibration_status`, `apply_calibration`, `send_re_isq`) over a loaded `ServedModel`.

The work happens in `agentkit.engine.calibration.OnlineCalibrator` on the model's engine thread,
between engine steps (`LocalBackend.call`): requests keep being served while a model is requantized,
one decoder layer per engine turn. Errors follow mistral.rs's messages, as ValueError.

Non-goals: calibration files at load time (`Which.*(imatrix=..., calibration_file=...)`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from agentkit.api.responses import CalibrationStatus
from agentkit.models.isq import isq_mode

__all__ = ["apply_calibration", "begin_calibration", "calibration_status", "send_re_isq"]

log = logging.getLogger("agentkit")


def _calibrator(host: Any, what: str) -> Any:
    cal = getattr(host, "isq", None)  # None for embedding models too
    if cal is None:
        why = (f"; {host.arch} runs on the transformers fallback, whose weights stay dense"
               if getattr(host, "backend_kind", None) == "transformers" else "")
        raise ValueError(f"{what} requires the model to have been loaded with ISQ: pass in_situ_quant= "
                         f"(e.g. \"Q4K\" or \"Q8_0\") to Runner{why}")
    return cal


def _status(counts: Any) -> CalibrationStatus:
    return CalibrationStatus(collecting=counts.collecting, layers=counts.layers,
                             layers_tracking=counts.layers_tracking, total_rows=counts.total_rows,
                             min_rows=counts.min_rows, max_rows=counts.max_rows)


def begin_calibration(host: Any) -> CalibrationStatus:
    """Start collecting activation statistics (restarting from zero if already collecting)."""
    cal = _calibrator(host, "Online calibration")
    host.backend.call(cal.begin).result()
    return _status(cal.counts())


def calibration_status(host: Any) -> CalibrationStatus:
    """What has been collected so far (collecting=False before `begin_calibration`)."""
    return _status(_calibrator(host, "Online calibration").counts())


def _requantize_all(host: Any, cal: Any, mode: str, imatrix: dict[str, Any] | None) -> None:
    try:
        for i in range(cal.num_layers):  # one layer per engine turn: steps run in between
            host.backend.call(lambda i=i: cal.requantize_layer(i, mode, imatrix)).result()
    finally:
        cal.finish()
        _drop_prefix_cache(host)


def _drop_prefix_cache(host: Any) -> None:
    """Cached KV was computed by the old weights: a later request must recompute its prefix."""
    engine = host.backend.engine
    host.backend.call(engine.drop_prefix_cache).result()


def apply_calibration(host: Any, save_cimatrix: str | os.PathLike[str] | None = None) -> CalibrationStatus:
    """Requantize every tracked layer from the source weights with the collected importance matrix
    and hot-swap it; optionally save the matrix as `.cimatrix`. Returns the status before applying."""
    cal = _calibrator(host, "Online calibration")
    if save_cimatrix is not None:
        if not isinstance(save_cimatrix, (str, os.PathLike)):
            raise TypeError(f"save_cimatrix must be a path or None, got {type(save_cimatrix).__name__}")
        if not os.fspath(save_cimatrix).endswith(".cimatrix"):  # checked before the statistics are consumed
            raise ValueError(f"save_cimatrix path {os.fspath(save_cimatrix)!r} must end in .cimatrix")
    status = _status(cal.counts())
    if not status.collecting:
        raise ValueError("No calibration data collected; call begin_calibration first.")
    imatrix = host.backend.call(cal.harvest).result()
    if save_cimatrix is not None:
        from agentkit.engine.imatrix import save_cimatrix as write

        write(save_cimatrix, imatrix)
    log.info("requantizing %d modules with a traffic-collected imatrix (%d have data)", status.layers, len(imatrix))
    _requantize_all(host, cal, cal.mode, imatrix)
    return status


def send_re_isq(host: Any, dtype: str) -> None:
    """Requantize the live ISQ model to the ISQ type `dtype` from its source weights.

    Returns once the work is queued (as mistral.rs); requests sent afterwards run on the new
    weights. A running calibration is stopped (its modules are replaced).
    """
    cal = _calibrator(host, "Runtime re-ISQ")
    mode = isq_mode(dtype)
    engine = host.backend.engine

    def run() -> None:
        cal.stop()
        for i in range(cal.num_layers):
            cal.requantize_layer(i, mode, None)
        cal.finish()
        engine.drop_prefix_cache()  # on the engine thread already

    future = host.backend.call(run)
    future.add_done_callback(lambda f: f.exception() and log.error("re-ISQ to %s failed: %s", dtype, f.exception()))
