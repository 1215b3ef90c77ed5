//! Struct field offsets of the running kernel, read from its BTF: the
//! probes walk kernel structures with them.

use std::path::Path;

use btf_rs::{Btf, Type};
use ipcwatch_common::{KernelOffsets, SockOffsets};

use crate::error::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `field` in `struct name`, looking through anonymous
/// struct and union members the way C does.
pub(crate) fn member_offset(btf: &Btf, name: &str, field: &str) -> Result<u32, Error> {
    let missing = || Error::Btf(format!("struct {name} has no field {field}"));
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|e| Error::Btf(format!("struct {name}: {e}")))?;
    for ty in types {
        if let Type::Struct(s) = ty
            && let Some(bits) = find_member(btf, &s, field, 0)
        {
            if bits % 8 != 0 {
                return Err(Error::Btf(format!("{name}.{field} is a bitfield")));
            }
            return Ok(bits / 8);
        }
    }
    Err(missing())
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, field: &str, base_bits: u32) -> Option<u32> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            return Some(base_bits + m.bit_offset());
        }
        if name.is_empty() {
            let mut ty = btf.resolve_chained_type(m).ok()?;
            // Skip qualifiers and typedefs down to the anonymous aggregate.
            for _ in 0..8 {
                match ty {
                    Type::Typedef(ref t) => ty = btf.resolve_chained_type(t).ok()?,
                    Type::Const(ref t) | Type::Volatile(ref t) => {
                        ty = btf.resolve_chained_type(t).ok()?
                    }
                    _ => break,
                }
            }
            if let Type::Struct(inner) | Type::Union(inner) = ty
                && let Some(found) = find_member(btf, &inner, field, base_bits + m.bit_offset())
            {
                return Some(found);
            }
        }
    }
    None
}

/// Read every offset the probes use from the kernel's BTF.
pub fn offsets_from(path: &Path) -> Result<KernelOffsets, Error> {
    let btf = Btf::from_file(path).map_err(|e| {
        Error::Btf(format!(
            "cannot read {}: {e} (ipcwatch needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)",
            path.display()
        ))
    })?;
    let off = |s: &str, f: &str| member_offset(&btf, s, f);
    Ok(KernelOffsets {
        task_files: off("task_struct", "files")?,
        task_tgid: off("task_struct", "tgid")?,
        task_pid: off("task_struct", "pid")?,
        task_exit_code: off("task_struct", "exit_code")?,
        task_signal: off("task_struct", "signal")?,
        signal_live: off("signal_struct", "live")?,
        files_fdt: off("files_struct", "fdt")?,
        fdt_max_fds: off("fdtable", "max_fds")?,
        fdt_fd: off("fdtable", "fd")?,
        file_inode: off("file", "f_inode")?,
        file_mode: off("file", "f_mode")?,
        inode_mode: off("inode", "i_mode")?,
        inode_ino: off("inode", "i_ino")?,
        inode_sb: off("inode", "i_sb")?,
        sb_magic: off("super_block", "s_magic")?,
        sb_dev: off("super_block", "s_dev")?,
        regs_nr: off("pt_regs", REGS[0])?,
        regs_arg0: off("pt_regs", REGS[1])?,
        regs_arg1: off("pt_regs", REGS[2])?,
        regs_arg2: off("pt_regs", REGS[3])?,
        regs_arg3: off("pt_regs", REGS[4])?,
        task_comm: off("task_struct", "comm")?,
    })
}

/// Offsets for the socket probes (see `SockOffsets`).
pub fn sock_offsets_from(path: &Path) -> Result<SockOffsets, Error> {
    let btf = Btf::from_file(path)
        .map_err(|e| Error::Btf(format!("cannot read {}: {e}", path.display())))?;
    let off = |s: &str, f: &str| member_offset(&btf, s, f);
    let common = off("sock", "__sk_common")?;
    let skc = |f: &str| off("sock_common", f).map(|o| o + common);
    let vfs_inode = off("socket_alloc", "vfs_inode")?;
    let socket = off("socket_alloc", "socket")?;
    Ok(SockOffsets {
        file_private_data: off("file", "private_data")?,
        socket_sk: off("socket", "sk")?,
        sk_family: skc("skc_family")?,
        sk_type: off("sock", "sk_type")?,
        sk_protocol: off("sock", "sk_protocol")?,
        sk_daddr: skc("skc_daddr")?,
        sk_rcv_saddr: skc("skc_rcv_saddr")?,
        sk_dport: skc("skc_dport")?,
        sk_num: skc("skc_num")?,
        sk_v6_daddr: skc("skc_v6_daddr")?,
        sk_v6_rcv_saddr: skc("skc_v6_rcv_saddr")?,
        sk_socket: off("sock", "sk_socket")?,
        unix_peer: off("unix_sock", "peer")?,
        socket_inode: vfs_inode.checked_sub(socket).ok_or_else(|| {
            Error::Btf("socket_alloc.vfs_inode precedes socket_alloc.socket".into())
        })?,
        regs_arg4: off("pt_regs", REGS_MORE[0])?,
        regs_arg5: off("pt_regs", REGS_MORE[1])?,
    })
}

/// `struct pt_regs` fields of the fifth and sixth syscall arguments.
#[cfg(target_arch = "x86_64")]
const REGS_MORE: [&str; 2] = ["r8", "r9"];

/// `struct pt_regs` fields holding the syscall number and the first four
/// arguments at syscall exit.
#[cfg(target_arch = "x86_64")]
const REGS: [&str; 5] = ["orig_ax", "di", "si", "dx", "r10"];
#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "ipcwatch reads syscall arguments from x86_64 pt_regs; other architectures are not supported yet"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_this_kernel() {
        // Every Linux with BTF has these; skip quietly where there is none.
        if !Path::new(VMLINUX_BTF).exists() {
            return;
        }
        let off = offsets_from(Path::new(VMLINUX_BTF)).expect("offsets");
        // task_struct.tgid immediately follows pid (both pid_t).
        assert_eq!(off.task_tgid, off.task_pid + 4);
        assert!(off.file_inode > 0 && off.inode_sb > 0);
        let s = sock_offsets_from(Path::new(VMLINUX_BTF)).expect("socket offsets");
        // skc_num follows skc_dport (both in one u32 of sock_common).
        assert_eq!(s.sk_num, s.sk_dport + 2);
        assert!(s.socket_inode > 0 && s.unix_peer > 0);
    }
}
