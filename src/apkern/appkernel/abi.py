"""The application kernel's ABI: driver operations and the communication-area layout.

The relinked crt0 includes this module, as a C program would include a header.
A communication area is COMM_SIZE bytes of the process's own memory, one per
thread pair. The application kernel writes a message and sets STATE to POSTED;
the bootstrap thread handles it, stores RESULT, sets STATE back to EMPTY and
calls `apkern_activate_thread`. With a message outstanding STATE stays POSTED,
so an activation then only carries signals (section 4.1, asynchronous activation).
"""

from __future__ import annotations

DEVICE = "/dev/apkern"

# driver_control operations
APKERN_CREATE_THREAD = 1  # arg: address of a create block; result: the application thread's id
APKERN_ACTIVATE_THREAD = 2  # arg: application thread id
# arg: the caller's own application thread id, whose message the caller is handling. Holds every
# other application thread of the process until that thread's activation, and returns once none
# of them is on a CPU: section 4.3's unmap protocol, for a bootstrap thread about to re-issue a
# call that removes mappings (a thread join frees the joined thread's stack).
APKERN_STOP_THREADS = 3
# Section 4.3, migration (the `migration` extension). arg: the caller's own application thread id.
# MIGRATE_HOME, after a KIND_MIGRATE message: the calling bootstrap thread takes over the thread's
# user context and runs it on the bootstrap kernel; the call returns to the bootstrap thread's own
# code only when MIGRATE_AWAY, called from that context, has given the thread back to the APs.
APKERN_MIGRATE_HOME = 4
APKERN_MIGRATE_AWAY = 5

# create block: little-endian words
CREATE_COMM = 0  # the thread pair's communication area
CREATE_ENTRY = 4  # code address the application thread starts at
CREATE_ARG0 = 8
CREATE_ARG1 = 12
CREATE_TLS = 16  # the application thread's local storage
CREATE_HANDLERS = 20  # the process's table of application signal handlers (NSIG words)
CREATE_SIZE = 24

# communication area layout (byte offsets)
STATE = 0x00
KIND = 0x04
NR = 0x08  # system call number or exception vector
ARGS = 0x0C  # MAX_ARGS words
MAX_ARGS = 6
ADDR = 0x24  # faulting address
ERROR = 0x28  # page-fault error code
RESULT = 0x2C
SIGNALS = 0x30  # signals the bootstrap thread passes on: bit n = signal n
TCB = 0x34  # the application thread's id
PASSES = 0x38  # bootstrap-loop passes
BUSY_PASSES = 0x3C  # passes that handled a message
FD = 0x40  # the driver descriptor of this process
STACK = 0x44  # the application thread's stack (mmapped by crt0; freed when the thread is joined)
EXITED = 0x48  # set by the bootstrap thread once its application thread has exited (crt0's own word)
# the migration extension (crt0's words, and MIG_ENTRY, which the driver reads):
MIG_ENTRY = 0x4C  # code address of crt0's system-call entry for the thread at home; 0: never migrates
MIG_USER = 0x50  # at home: user time in the policy window so far
MIG_RESUMED = 0x54  # at home: when its last call returned (time stamp, low word)
MIG_CALLS = 0x58  # at home: calls in the policy window so far
# The migration policy's thresholds, the same on both sides (appkernel/migration.py).
# HOME_USER is the bootstrap processor's forwarding work per call, as `apkern bench attribution`
# measures it on the quick grid (about 400 instructions: the bootstrap thread's switches, loop
# passes and the activation); a policy threshold, not a kernel cost: nothing is charged for it.
HOME_USER = 400  # go home below this many user instructions per call over a window
AWAY_USER = 2 * HOME_USER  # go back above this; between the two a thread stays where it is
WINDOW_CALLS = 16  # calls (and forwarded faults) per window; a window also ends once its user
WINDOW_USER = WINDOW_CALLS * AWAY_USER  # time shows the thread compute-bound, however few its calls
HANDLERS = 0x80  # 32 words: the application's signal handlers (used in the main area only)
COMM_SIZE = 0x100

# STATE values
EMPTY = 0
POSTED = 1  # a message for the bootstrap thread
PENDING = 2  # written, not yet posted: other threads of the process are being stopped (section 4.3)

# KIND values
KIND_SYSCALL = 1
KIND_PAGE_FAULT = 2
KIND_EXCEPTION = 3
KIND_MIGRATE = 4  # take over my user context (section 4.3); NR and ARGS: the call it was making

# error code bits of a forwarded page fault (as IA-32 pushes them)
FAULT_WRITE = 2
