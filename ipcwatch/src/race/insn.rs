//! Which instruction did a trapped write: the watchpoint traps after the
//! write, so the writer is the instruction that ends at the trap address.
//! Atomic read-modify-writes (lock-prefixed, or xchg with memory) mark a
//! word used for synchronization: collisions between them are not races.

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, Mnemonic, OpKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteInsn {
    /// Address of the instruction.
    pub ip: u64,
    /// Intel syntax, e.g. "add qword ptr [rax],1".
    pub text: String,
    /// lock-prefixed, or xchg with a memory operand.
    pub atomic: bool,
}

fn describe(instr: &iced_x86::Instruction) -> WriteInsn {
    let mut text = String::new();
    IntelFormatter::new().format(instr, &mut text);
    let memory = (0..instr.op_count()).any(|i| instr.op_kind(i) == OpKind::Memory);
    WriteInsn {
        ip: instr.ip(),
        text,
        atomic: instr.has_lock_prefix() || (instr.mnemonic() == Mnemonic::Xchg && memory),
    }
}

/// Decode `code`, the bytes from `base` up to the trap address, forward
/// from `base` (a function's start) and return the instruction that ends
/// exactly at `trap_ip`.
pub fn write_before(code: &[u8], base: u64, trap_ip: u64) -> Option<WriteInsn> {
    let mut decoder = Decoder::with_ip(64, code, base, DecoderOptions::NONE);
    for instr in &mut decoder {
        if instr.is_invalid() {
            return None;
        }
        if instr.next_ip() == trap_ip {
            return Some(describe(&instr));
        }
        if instr.next_ip() > trap_ip {
            return None;
        }
    }
    None
}

/// Without a function start: try every start in the 15 bytes before the
/// trap (the longest x86 instruction) and keep the candidates that decode
/// to an instruction writing memory and ending at the trap. Returns the
/// longest such instruction.
pub fn write_before_unaligned(code: &[u8], trap_ip: u64) -> Option<WriteInsn> {
    let n = code.len();
    (1..=n.min(15))
        .rev()
        .filter_map(|len| {
            let start = trap_ip - len as u64;
            let mut d = Decoder::with_ip(64, &code[n - len..], start, DecoderOptions::NONE);
            let instr = d.decode();
            let memory = (0..instr.op_count()).any(|i| instr.op_kind(i) == OpKind::Memory);
            (!instr.is_invalid() && instr.next_ip() == trap_ip && memory).then(|| describe(&instr))
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    // mov rax,[rdi]; add qword ptr [rdi],1; lock add qword ptr [rdi],1;
    // xchg [rdi],rax; mov [rdi],rax; ret
    const CODE: &[u8] = &[
        0x48, 0x8b, 0x07, // mov rax,[rdi]           0x1000
        0x48, 0x83, 0x07, 0x01, // add qword [rdi],1 0x1003
        0xf0, 0x48, 0x83, 0x07, 0x01, // lock add   0x1007
        0x48, 0x87, 0x07, // xchg [rdi],rax          0x100c
        0x48, 0x89, 0x07, // mov [rdi],rax           0x100f
        0xc3, // ret                                 0x1012
    ];

    #[test]
    fn finds_the_instruction_that_ends_at_the_trap() {
        let plain = write_before(CODE, 0x1000, 0x1007).unwrap();
        assert_eq!((plain.ip, plain.atomic), (0x1003, false));
        assert!(
            plain.text.starts_with("add qword ptr [rdi]"),
            "{}",
            plain.text
        );
        let locked = write_before(CODE, 0x1000, 0x100c).unwrap();
        assert!(
            locked.atomic && locked.text.starts_with("lock add"),
            "{}",
            locked.text
        );
        let xchg = write_before(CODE, 0x1000, 0x100f).unwrap();
        assert!(
            xchg.atomic && xchg.text.starts_with("xchg"),
            "{}",
            xchg.text
        );
        let store = write_before(CODE, 0x1000, 0x1012).unwrap();
        assert!(
            !store.atomic && store.text.starts_with("mov [rdi]"),
            "{}",
            store.text
        );
        // Not on an instruction boundary.
        assert_eq!(write_before(CODE, 0x1000, 0x1005), None);
    }

    #[test]
    fn without_a_function_start_the_bytes_before_the_trap_are_enough() {
        let tail = &CODE[..0x0c]; // up to the trap after the lock add
        let w = write_before_unaligned(tail, 0x100c).unwrap();
        assert!(w.atomic && w.text.starts_with("lock add"), "{}", w.text);
    }
}
