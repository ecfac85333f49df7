import pyhv.storage.vhdx as vhdx
from pyhv.storage.formats import FormatDriver
from pyhv.storage.image import ImageFormat


def test_exported_members() -> None:
    assert vhdx.__all__ == sorted(vhdx.__all__) == ["FORMAT", "VhdxFormat", "VhdxImage"]
    assert all(hasattr(vhdx, name) for name in vhdx.__all__)


def test_format_driver() -> None:
    driver: FormatDriver = vhdx.FORMAT
    assert driver.format is ImageFormat.VHDX
