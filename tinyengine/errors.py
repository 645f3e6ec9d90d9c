"""User-facing errors (core layer: imports nothing, so that every layer can raise them).

The CLI prints their message on one line and exits with code 2.
"""


class TinyEngineError(Exception):
    """Base of errors that are the user's input, not a bug: printed without a traceback."""


class ModelError(TinyEngineError, ValueError):
    """The model file cannot be read or is malformed."""


class FitError(TinyEngineError):
    """The compiled model does not fit the board's SRAM or Flash."""


class PatchError(TinyEngineError):
    """A patch schedule that cannot be built for this model."""


class IRError(ValueError):
    """A graph that breaks an IR invariant (bad shape, dangling tensor, cycle...)."""


class UnsupportedError(ValueError):
    """A model feature TinyEngine does not support; the message names node, op and what is."""


USER_ERRORS = (TinyEngineError, IRError, UnsupportedError)


def run_command(prog: str, call, user_errors: tuple = (), describe=None) -> int:
    """Run a command-line tool's ``call()`` and turn what it raises into the exit code.

    A user's error (``USER_ERRORS`` and ``user_errors``) prints ``prog: error: <message>`` on
    one line of stderr (``describe(e)`` gives the message; by default str(e) on one line) and
    returns 2; Ctrl-C returns 130; a closed pipe on stdout (``| head``) 141, quietly; anything else is a bug: one line saying so, 3 (the
    traceback with TINYENGINE_DEBUG=1).  Shared by tinyengine, tinytrain and tinynas."""
    import os
    import sys

    try:
        return call()
    except USER_ERRORS + tuple(user_errors) as e:
        msg = describe(e) if describe is not None else " ".join(str(e).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:          # the reader went away (`tinyengine ... | head`): not a bug
        try:                         # stop Python's own flush of stdout at exit from failing too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141                   # 128 + SIGPIPE, as a shell reports a command killed by it
    except Exception as e:  # a bug, not the user's input: still one line
        if os.environ.get("TINYENGINE_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} "
              "(please report it; TINYENGINE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3
