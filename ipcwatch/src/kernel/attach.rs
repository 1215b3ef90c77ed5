//! Attaching programs one at a time: a probe that cannot be attached is
//! skipped, with the reason, and tracing goes on without it.

use aya::Ebpf;
use aya::programs::{BtfTracePoint, Program, ProgramError, RawTracePoint, TracePoint};

/// A probe that could not be attached: tracing goes on without it.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub probe: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "probe {} not attached: {}", self.probe, self.reason)
    }
}

/// The program `name` of the object, as its type `T`.
pub fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())
}

/// Run `attach`; a failure is recorded as a skipped probe: tracing goes on
/// without it.
pub fn attach_or_skip(
    skipped: &mut Vec<Skipped>,
    probe: String,
    attach: impl FnOnce() -> Result<(), String>,
) -> bool {
    match attach() {
        Ok(()) => true,
        Err(reason) => {
            skipped.push(Skipped { probe, reason });
            false
        }
    }
}

pub fn attach_raw(ebpf: &mut Ebpf, prog: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    attach_or_skip(skipped, format!("raw_tp:{tp}"), || {
        let program: &mut RawTracePoint = program(ebpf, prog)?;
        program.load().map_err(|e| e.to_string())?;
        program.attach(tp).map_err(|e| e.to_string())?;
        Ok(())
    });
}

/// Program `prog`_btf on tp_btf `tp`, which loads through typed pointers
/// (fewer helper calls); kernels that refuse it, or the environment
/// variable IPCWATCH_NO_TP_BTF, get `prog` on the raw tracepoint.
pub fn attach_btf_or_raw(ebpf: &mut Ebpf, prog: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    let btf_prog = format!("{prog}_btf");
    let attached = attach_or_skip(skipped, format!("tp_btf:{tp}"), || {
        if std::env::var_os("IPCWATCH_NO_TP_BTF").is_some() {
            return Err("IPCWATCH_NO_TP_BTF is set: using the raw tracepoint".into());
        }
        let btf = aya::Btf::from_sys_fs().map_err(|e| e.to_string())?;
        let program: &mut BtfTracePoint = program(ebpf, &btf_prog)?;
        program.load(tp, &btf).map_err(|e| e.to_string())?;
        program.attach().map_err(|e| e.to_string())?;
        Ok(())
    });
    if !attached {
        attach_raw(ebpf, prog, tp, skipped);
    }
}

pub fn attach_tp(ebpf: &mut Ebpf, prog: &str, cat: &str, tp: &str, skipped: &mut Vec<Skipped>) {
    attach_or_skip(skipped, format!("{cat}:{tp}"), || {
        let program: &mut TracePoint = program(ebpf, prog)?;
        program.load().map_err(|e| e.to_string())?;
        program.attach(cat, tp).map_err(|e| e.to_string())?;
        Ok(())
    });
}
