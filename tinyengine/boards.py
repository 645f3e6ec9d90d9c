"""Boards TinyEngine generates projects for.

A Cortex-M board's firmware runs in two builds of one project:

* the QEMU build (``make``, ``make run``): linked at the origins of the QEMU machine with the same
  core (``qemu_machine``) but with the board's own SRAM and Flash sizes, so a model that does not fit
  the board fails to link; instructions are counted with the CMSDK timer (``-icount shift=6``);
* the board build (``make flash``): linked at the board's real origins, cycles from the DWT counter.

Both use semihosting for input.bin / output.bin and text (QEMU, or a debugger such as openocd).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import TinyEngineError

CORTEX_M7_DP = ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb")
CORTEX_M7_SP = ("-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-mthumb")
CORTEX_M4 = ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb")

#: Memory origins of the QEMU machines (code memory, SRAM).
QEMU_ORIGINS = {"mps2-an500": (0x00000000, 0x20000000), "mps2-an386": (0x00000000, 0x20000000)}

DEFAULT_STACK_BYTES = 8 * 1024

#: SYSCLK of the MPS2 FPGA images (AN386, AN500), as QEMU's mps2 machines model it.
MPS2_CLOCK_HZ = 25_000_000


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    kind: str                       # "cortex-m" or "host"
    cpu: str = ""                   # "cortex-m7", "cortex-m4"; "" for host
    cflags: tuple = ()              # gcc CPU/FPU flags of the board's own core
    sram_bytes: int = 0             # SRAM usable for .data + .bss + stack (0: unlimited, host)
    flash_bytes: int = 0            # Flash for code + constants (0: unlimited, host)
    sram_origin: int = 0            # real addresses, for `make flash`
    flash_origin: int = 0
    qemu_machine: str = ""          # QEMU machine with the same core, for `make run`
    stack_bytes: int = DEFAULT_STACK_BYTES   # stack reserved by the linker script
    openocd_target: str = ""        # openocd target config, e.g. "target/stm32f7x.cfg"
    flashable: bool = False         # can `make flash` program it (st-flash / openocd)
    clock_hz: int = 0               # core clock the datasheet gives (0: none, host); latency estimates
    notes: tuple = field(default_factory=tuple)

    @property
    def has_dsp(self) -> bool:
        """Armv7E-M DSP extension (SMLAD, SXTB16...): Cortex-M4 and M7."""
        return self.cpu in ("cortex-m4", "cortex-m7")

    @property
    def has_clock(self) -> bool:
        return self.clock_hz > 0

    def latency_ms(self, instructions: int) -> float:
        """An estimate of the time `instructions` take at the board's clock, assuming about one
        instruction per cycle (what QEMU's -icount counts; real cores stall on memory and branches and
        dual-issue some pairs, so this is an estimate, not a measurement)."""
        if not self.has_clock:
            raise TinyEngineError(f"board {self.name} has no clock rate, so no latency estimate "
                                  f"(boards with one: {', '.join(b.name for b in _BOARDS if b.has_clock)})")
        return 1000.0 * instructions / self.clock_hz

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def qemu_origins(self) -> tuple:
        """(flash origin, SRAM origin) of the QEMU build."""
        return QEMU_ORIGINS[self.qemu_machine]

    def flash_command(self, elf: str, binary: str) -> str:
        """Shell command that programs the board: st-flash if installed, else openocd."""
        if not self.flashable:
            return ""
        openocd = (f"openocd -f interface/stlink.cfg -f {self.openocd_target} "
                   f"-c \"program {elf} verify reset exit\"")
        return (f"if command -v st-flash >/dev/null 2>&1; then "
                f"st-flash --reset write {binary} 0x{self.flash_origin:08X}; "
                f"elif command -v openocd >/dev/null 2>&1; then {openocd}; "
                f"else echo 'error: neither st-flash nor openocd is installed' >&2; exit 1; fi")


_BOARDS = [
    Board("stm32f746", "STM32F746 (Cortex-M7 216 MHz, single-precision FPU): 320 KB SRAM, 1 MB Flash",
          "cortex-m", "cortex-m7", CORTEX_M7_SP, sram_bytes=320 * 1024, flash_bytes=1024 * 1024,
          sram_origin=0x20000000, flash_origin=0x08000000, qemu_machine="mps2-an500",
          openocd_target="target/stm32f7x.cfg", flashable=True, clock_hz=216_000_000,
          notes=("SRAM = 64 KB DTCM + 240 KB SRAM1 + 16 KB SRAM2, contiguous at 0x20000000",)),
    Board("stm32h743", "STM32H743 (Cortex-M7 480 MHz, double-precision FPU): 512 KB AXI SRAM, 2 MB Flash",
          "cortex-m", "cortex-m7", CORTEX_M7_DP, sram_bytes=512 * 1024, flash_bytes=2 * 1024 * 1024,
          sram_origin=0x24000000, flash_origin=0x08000000, qemu_machine="mps2-an500",
          openocd_target="target/stm32h7x.cfg", flashable=True, clock_hz=480_000_000,
          notes=("only the AXI SRAM at 0x24000000 is used; the 128 KB DTCM at 0x20000000 is not",)),
    Board("stm32f411", "STM32F411 (Cortex-M4 100 MHz, single-precision FPU): 128 KB SRAM, 512 KB Flash",
          "cortex-m", "cortex-m4", CORTEX_M4, sram_bytes=128 * 1024, flash_bytes=512 * 1024,
          sram_origin=0x20000000, flash_origin=0x08000000, qemu_machine="mps2-an386",
          openocd_target="target/stm32f4x.cfg", flashable=True, clock_hz=100_000_000),
    Board("mps2-an500", "Arm MPS2 AN500 (Cortex-M7, as emulated by QEMU): 4 MB SRAM, 4 MB code memory",
          "cortex-m", "cortex-m7", CORTEX_M7_DP, sram_bytes=4 * 1024 * 1024, flash_bytes=4 * 1024 * 1024,
          sram_origin=0x20000000, flash_origin=0x00000000, qemu_machine="mps2-an500", clock_hz=MPS2_CLOCK_HZ),
    Board("mps2-an386", "Arm MPS2 AN386 (Cortex-M4, as emulated by QEMU): 4 MB SRAM, 4 MB code memory",
          "cortex-m", "cortex-m4", CORTEX_M4, sram_bytes=4 * 1024 * 1024, flash_bytes=4 * 1024 * 1024,
          sram_origin=0x20000000, flash_origin=0x00000000, qemu_machine="mps2-an386", clock_hz=MPS2_CLOCK_HZ),
    Board("host", "this computer (native gcc): for debugging; no Flash/SRAM limits, no instruction count",
          "host"),
]

BOARDS: dict = {b.name: b for b in _BOARDS}


class UnknownBoardError(TinyEngineError, ValueError):
    """A board name TinyEngine does not know; the message lists the boards."""


def get_board(name: str) -> Board:
    """The board called ``name``; an UnknownBoardError listing the known boards otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownBoardError(f"unknown board '{name}' (boards: {', '.join(BOARDS)})") from None


def list_boards() -> list:
    return list(BOARDS.values())
