"""``cupy.cuda`` as far as minivision and its tests use it: one device that is always ready."""


class runtime:  # noqa: N801  (CuPy's name)
    @staticmethod
    def getDeviceCount() -> int:  # noqa: N802
        return 1

    @staticmethod
    def memGetInfo() -> tuple[int, int]:  # noqa: N802
        """(free, total) bytes: an H200's 141 GiB, all of it free."""
        return 141 * 2**30, 141 * 2**30


class Device:
    def __init__(self, device_id: int = 0):
        self.id = device_id
        self.compute_capability = "90"

    def synchronize(self) -> None:
        """Nothing to wait for: the stand-in's kernels have finished when a launch returns."""

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)
