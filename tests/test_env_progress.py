"""The build progress display of serve / predict / prepare-env (modelpack/cli/prepare_env.py)."""

from __future__ import annotations

import io
import logging
import time

from modelpack.cli.prepare_env import BuildDisplay, build_display


class Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    display = BuildDisplay(out)
    display("Creating a virtual environment")
    display("Collecting roman==4.2")
    display.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith("s] Collecting roman==4.2")
    assert "\r" not in out.getvalue()


def test_one_refreshing_line_on_a_terminal():
    out = Terminal()
    display = BuildDisplay(out)
    display.close()
    assert out.getvalue() == ""  # nothing happened, nothing shown
    display = BuildDisplay(out)
    display("Collecting roman==4.2")
    time.sleep(0.35)  # the ticker redraws the elapsed time meanwhile
    display.close()
    text = out.getvalue()
    assert text.count("[0:00] Collecting roman==4.2") >= 2 and "\n" not in text
    assert text.endswith("\r\x1b[K")  # erased at the end


def test_log_messages_erase_the_line_first(monkeypatch):
    out = Terminal()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    with build_display(out) as display:
        display("Installing collected packages: roman")
        logging.getLogger("modelpack.env.build").warning("Built environment abc")
    assert "\r\x1b[KBuilt environment abc\n" in out.getvalue()
    assert "emit" not in vars(handler)  # the handler is restored
