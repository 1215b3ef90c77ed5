//! Function, file and line of code addresses in a live process
//! (blazesym: ELF symbols and DWARF where the binary has them).

use std::os::unix::fs::FileExt;

use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Process, source::Source};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub ip: u64,
    pub function: Option<String>,
    /// Address where the function starts, in the process.
    pub function_start: Option<u64>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    /// "func (file:line)", "func+0x1c", or the bare address.
    pub fn describe(&self) -> String {
        match (&self.function, &self.file, self.line) {
            (Some(f), Some(file), Some(line)) => format!("{f} ({file}:{line})"),
            (Some(f), _, _) => match self.function_start {
                Some(s) if s != self.ip => format!("{f}+{:#x}", self.ip - s),
                _ => f.clone(),
            },
            _ => format!("{:#x}", self.ip),
        }
    }
}

pub struct Symbols {
    inner: Symbolizer,
}

impl Default for Symbols {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbols {
    pub fn new() -> Self {
        Symbols {
            inner: Symbolizer::new(),
        }
    }

    /// Symbolize `ips` of live process `pid`; unknown addresses keep only
    /// their `ip`.
    pub fn frames(&self, pid: u32, ips: &[u64]) -> Vec<Frame> {
        let src = Source::Process(Process::new(pid.into()));
        // One address blazesym cannot take fails the whole batch: then
        // each address alone, so that the others keep their names.
        let syms: Vec<Option<Symbolized>> = match self.inner.symbolize(&src, Input::AbsAddr(ips)) {
            Ok(syms) => syms.into_iter().map(Some).collect(),
            Err(e) => {
                tracing::debug!("symbolizing {} addresses of pid {pid}: {e}", ips.len());
                ips.iter()
                    .map(|&ip| self.inner.symbolize_single(&src, Input::AbsAddr(ip)).ok())
                    .collect()
            }
        };
        ips.iter()
            .enumerate()
            .map(|(i, &ip)| match syms.get(i) {
                Some(Some(Symbolized::Sym(s))) => Frame {
                    ip,
                    function: Some(s.name.to_string()),
                    function_start: Some(ip - s.offset as u64),
                    file: s
                        .code_info
                        .as_ref()
                        .map(|c| c.to_path().display().to_string()),
                    line: s.code_info.as_ref().and_then(|c| c.line),
                },
                _ => Frame {
                    ip,
                    ..Frame::default()
                },
            })
            .collect()
    }
}

/// Read `len` bytes of `pid`'s memory at `addr` (root: /proc/PID/mem).
pub fn read_memory(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, addr).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_to_find() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn symbolizes_a_function_of_this_process() {
        let ip = a_function_to_find as *const () as u64;
        let f = &Symbols::new().frames(std::process::id(), &[ip])[0];
        let name = f.function.as_deref().unwrap_or("");
        assert!(name.contains("a_function_to_find"), "{f:?}");
        assert_eq!(f.function_start, Some(ip));
        assert!(read_memory(std::process::id(), ip, 4).is_some());
    }
}
