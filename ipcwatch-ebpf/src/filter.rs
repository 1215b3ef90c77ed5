//! Which processes are traced: never ipcwatch itself; with `--pid`,
//! `--comm` or a command, only those in `TRACED` or with a name in `COMMS`.

use aya_ebpf::helpers::bpf_get_current_comm;
use ipcwatch_common::filter;

use crate::maps::{COMMS, TRACED, conf};

/// May process `tgid` produce events?
pub(crate) fn allowed(tgid: u32) -> bool {
    if tgid == conf!(self_tgid) {
        return false;
    }
    let mode = conf!(filter);
    if mode & filter::LISTED == 0 {
        return true;
    }
    if TRACED.get_ptr(tgid).is_some() {
        return true;
    }
    if mode & filter::COMM != 0
        && let Ok(comm) = bpf_get_current_comm()
    {
        return COMMS.get_ptr(comm).is_some();
    }
    false
}
