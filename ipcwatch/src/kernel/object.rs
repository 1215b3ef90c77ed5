//! Which of the two embedded eBPF objects this kernel gets.
//!
//! build.rs builds both bins of `ipcwatch-ebpf`: the normal object, whose
//! per-CPU sequence numbers are taken with BPF's atomic fetch-and-add
//! (BPF_ATOMIC | BPF_FETCH, Linux 5.12+), and the compat object, the same
//! programs without it (a plain load and store, exact where the programs
//! run with preemption disabled, as on 5.10). A kernel without
//! fetch-and-add refuses every program of the normal object that holds
//! one, before verifying it ("BPF_STX uses reserved fields", dead code
//! included), so the choice is made before loading anything: by loading
//! a six-instruction program that uses fetch-and-add, never from the
//! kernel's version string (distributions backport).
//!
//! A kernel that takes fetch-and-add (5.12+) may still not know the two
//! helpers the normal object's shared-memory family calls, `bpf_loop`
//! and `bpf_find_vma` (5.17): that family would then be refused and its
//! events lost. The compat object does without them, so a kernel whose
//! BTF does not name them in `enum bpf_func_id` gets it too (5.12 to
//! 5.16).

use std::io;
use std::sync::OnceLock;

/// The normal object (bin `ipcwatch` of crate ipcwatch-ebpf, with BTF).
pub static NORMAL: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipcwatch"));

/// The compat object (bin `ipcwatch-compat`): no atomic fetch-and-add.
pub static COMPAT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ipcwatch-compat"));

/// Forces the choice: `compat` or `normal` (for tests; the probe is
/// still made and reported).
pub const ENV: &str = "IPCWATCH_EBPF_OBJECT";

/// The object chosen for this kernel, and why.
#[derive(Debug, Clone)]
pub struct Choice {
    pub compat: bool,
    /// Whether the kernel took the fetch-and-add probe: `Err` holds why
    /// not (the kernel's error and verifier line).
    pub fetch_add: Result<(), String>,
    /// The normal object's later helpers ([`LATER_HELPERS`]) that this
    /// kernel's BTF does not name.
    pub unknown_helpers: Vec<&'static str>,
    /// Set when [`ENV`] made the choice.
    pub forced: bool,
}

impl Choice {
    pub fn object(&self) -> &'static [u8] {
        if self.compat { COMPAT } else { NORMAL }
    }

    /// "normal", "compat".
    pub fn name(&self) -> &'static str {
        if self.compat { "compat" } else { "normal" }
    }

    /// One line for doctor and `-v`: the probe's result and the object.
    pub fn describe(&self) -> String {
        let mut probe = match &self.fetch_add {
            Ok(()) => "atomic fetch-and-add loads".to_string(),
            Err(e) => format!("atomic fetch-and-add refused ({e})"),
        };
        if !self.unknown_helpers.is_empty() {
            probe += &format!(
                "; the kernel does not know {} (5.17+)",
                self.unknown_helpers.join(", ")
            );
        }
        let why = if self.forced {
            format!(" ({ENV} is set)")
        } else if self.compat {
            " (sequence numbers by load and store, this kernel's tracing programs run with preemption disabled)".to_string()
        } else {
            String::new()
        };
        format!("{probe}: {} object{why}", self.name())
    }
}

/// The choice for this kernel, probed once per process.
pub fn chosen() -> &'static Choice {
    static CHOICE: OnceLock<Choice> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let fetch_add = probe_fetch_add();
        let unknown_helpers = match btf_rs::Btf::from_file(super::btf::VMLINUX_BTF) {
            Ok(btf) => unknown_helpers(&btf),
            // Without BTF nothing loads anyway; that is said elsewhere.
            Err(_) => Vec::new(),
        };
        let forced = std::env::var(ENV).ok();
        let compat = match forced.as_deref() {
            Some("compat") => true,
            Some("normal") => false,
            // EINVAL: the kernel does not know the instruction. Any other
            // error (EPERM without privileges) says nothing about it: the
            // normal object, whose load then fails with the real reason.
            _ => {
                fetch_add
                    .as_ref()
                    .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
                    || !unknown_helpers.is_empty()
            }
        };
        let forced = matches!(forced.as_deref(), Some("compat" | "normal"));
        Choice {
            compat,
            fetch_add: fetch_add.map_err(|e| e.to_string()),
            unknown_helpers,
            forced,
        }
    })
}

/// The helpers of the normal object newer than its fetch-and-add (5.12),
/// by their name in the kernel's `enum bpf_func_id`: the shared-memory
/// family walks a mapping's file with `bpf_loop` and finds a shared
/// anonymous mapping's shmem file with `bpf_find_vma` (both 5.17).
pub const LATER_HELPERS: [&str; 2] = ["BPF_FUNC_loop", "BPF_FUNC_find_vma"];

/// Which of [`LATER_HELPERS`] `btf`'s `enum bpf_func_id` lacks. The
/// enum comes from the kernel's own uapi header, so it lists exactly the
/// helpers that kernel was built with, backports included. A BTF without
/// the enum says nothing: none are reported missing.
fn unknown_helpers(btf: &btf_rs::Btf) -> Vec<&'static str> {
    let Ok(types) = btf.resolve_types_by_name("bpf_func_id") else {
        return Vec::new();
    };
    let Some(known) = types.iter().find_map(|t| match t {
        btf_rs::Type::Enum(e) => Some(
            e.members
                .iter()
                .filter_map(|m| btf.resolve_name(m).ok())
                .collect::<Vec<String>>(),
        ),
        _ => None,
    }) else {
        return Vec::new();
    };
    LATER_HELPERS
        .into_iter()
        .filter(|h| !known.iter().any(|k| k == h))
        .collect()
}

/// A refused probe: the kernel's error with the verifier's line.
#[derive(Debug)]
struct Refused {
    error: io::Error,
    log: String,
}

impl Refused {
    fn raw_os_error(&self) -> Option<i32> {
        self.error.raw_os_error()
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.log.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => write!(f, "{}: {line}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// `BPF_PROG_LOAD`'s attribute, as far as this probe fills it (the
/// kernel takes a shorter attribute and zeroes the rest).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// One BPF instruction: opcode, registers (dst low nibble, src high),
/// offset, immediate.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst | (src << 4)) << 8
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

/// The probe program: a stack slot zeroed, one fetch-and-add on it, exit 0.
fn fetch_add_program() -> [u64; 6] {
    const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const STX_DW: u8 = 0x7b; // BPF_STX | BPF_MEM | BPF_DW
    const ATOMIC_DW: u8 = 0xdb; // BPF_STX | BPF_ATOMIC | BPF_DW
    const ADD_FETCH: i32 = 0x01; // BPF_ADD | BPF_FETCH
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    [
        insn(MOV64_K, 1, 0, 0, 0),
        insn(STX_DW, 10, 1, -8, 0),
        insn(MOV64_K, 1, 0, 0, 1),
        insn(ATOMIC_DW, 10, 1, -8, ADD_FETCH),
        insn(MOV64_K, 0, 0, 0, 0),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// Load [`fetch_add_program`] as a socket filter and close it.
fn probe_fetch_add() -> Result<(), Refused> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    let prog = fetch_add_program();
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: bpf(BPF_PROG_LOAD) with an attribute of the size given,
    // whose pointers (instructions, license, log) outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as libc::c_uint,
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        return Err(Refused {
            error,
            log: String::from_utf8_lossy(&log[..end]).into_owned(),
        });
    }
    // SAFETY: closing the descriptor the kernel just gave us.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::VMLINUX_BTF;
    use object::{Object, ObjectSection, SectionFlags, elf::SHF_EXECINSTR};

    /// (instructions, fetching atomics) in the object's code sections.
    fn atomics(elf: &[u8]) -> (usize, usize) {
        let file = object::File::parse(elf).expect("an ELF object");
        let mut insns = 0;
        let mut fetch = 0;
        for section in file.sections() {
            let SectionFlags::Elf { sh_flags } = section.flags() else {
                continue;
            };
            if sh_flags & u64::from(SHF_EXECINSTR) == 0 {
                continue;
            }
            let data = section.data().expect("section data");
            for i in data.chunks_exact(8) {
                insns += 1;
                let imm = i32::from_le_bytes([i[4], i[5], i[6], i[7]]);
                // BPF_STX | BPF_ATOMIC, word or double word, with BPF_FETCH
                // (every atomic but the plain add: fetch-add, xchg, cmpxchg).
                if (i[0] == 0xdb || i[0] == 0xc3) && imm & 0x01 != 0 {
                    fetch += 1;
                }
            }
        }
        (insns, fetch)
    }

    #[test]
    fn the_compat_object_has_no_fetching_atomic_and_the_normal_one_has() {
        let (insns, fetch) = atomics(COMPAT);
        assert!(insns > 1000, "{insns} instructions in the compat object");
        assert_eq!(fetch, 0, "fetching atomics in the compat object");
        let (insns, fetch) = atomics(NORMAL);
        assert!(insns > 1000, "{insns} instructions in the normal object");
        assert!(fetch > 0, "the normal object lost its fetch-and-add");
    }

    /// This kernel (6.18) knows both later helpers; a BTF that lacks the
    /// enum names none missing.
    #[test]
    fn this_kernel_knows_the_later_helpers() {
        let btf = btf_rs::Btf::from_file(VMLINUX_BTF).expect("vmlinux BTF");
        assert!(unknown_helpers(&btf).is_empty());
        assert!(chosen().unknown_helpers.is_empty());
    }

    #[test]
    fn the_probe_program_encodes_a_fetch_add_on_the_stack() {
        let p = fetch_add_program();
        // r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)
        assert_eq!(p[3].to_le_bytes(), [0xdb, 0x1a, 0xf8, 0xff, 1, 0, 0, 0]);
        assert_eq!(p[5].to_le_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }
}
