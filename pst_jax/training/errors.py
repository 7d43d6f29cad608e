"""The error type for bad input found before training, shared by every task and launcher."""


class InputError(ValueError):
    """Bad input found before training: the launcher prints it as one line, without a traceback."""


def one_line(error: BaseException | str) -> str:
    """``error``'s text on one line (a library's message may span several), for an :class:`InputError`.

    Example:
      >>> one_line(OSError("no file named flax_model.msgpack\\n  in folder x"))
      'no file named flax_model.msgpack in folder x'
    """
    return " ".join(str(error).split())


class Diverged(RuntimeError):
    """Training produced a non-finite loss or gradient norm; the run stops and reports no metric as a result.

    Attributes:
      record: ``{"step", "loss", "grad_norm", "last_finite_loss", "last_finite_step"}`` (non-finite values as
        strings, so the record is strict JSON).
    """

    def __init__(self, step: int, loss: float, grad_norm: float, last_finite: tuple[int, float] | None) -> None:
        last_step, last_loss = last_finite if last_finite else (None, None)
        self.record = {
            "step": step,
            "loss": repr(loss),
            "grad_norm": repr(grad_norm),
            "last_finite_step": last_step,
            "last_finite_loss": last_loss,
        }
        before = f"last finite loss {last_loss:.4f} at step {last_step}" if last_finite else "no finite loss before it"
        super().__init__(
            f"training diverged at step {step}: loss {loss}, gradient norm {grad_norm} ({before}); "
            "lower --learning_rate"
        )


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT stopped training after a step; a checkpoint of that step is on disk.

    Attributes:
      exit_code: ``128 + the signal's number``, as a shell reports a process the signal killed.
    """

    def __init__(self, signal_name: str, signal_number: int, step: int, checkpoints: str) -> None:
        self.exit_code = 128 + signal_number
        super().__init__(
            f"stopped by {signal_name} after step {step}; checkpoint saved in {checkpoints}; "
            "rerun the same command to resume"
        )
