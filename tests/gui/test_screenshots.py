"""The screenshot tour (docs/console-gui.md) still runs through every view."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from tests.gui.make_screenshots import main

VIEWS = ("signin", "fleet", "device", "confirm", "send", "approvals", "events", "charts",
         "audit")


def test_the_screenshot_tour_saves_a_picture_of_each_view(qtbot: QtBot, tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    for view in VIEWS:
        image = QImage(str(tmp_path / f"{view}.png"))
        assert not image.isNull() and image.width() > 300, view
        # Not blank: a grabbed view has more than a couple of colours.
        colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
                   for y in range(0, image.height(), 7)}
        assert len(colours) > 4, view
