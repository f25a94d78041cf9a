//! Raw `setsockopt` for the socket options a config names by level and number
//! (`SocketOption`), which no safe wrapper covers. The only `unsafe` in the
//! server: one libc call with a buffer we own for its duration.

#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd};

/// `setsockopt(fd, level, name, value)`.
pub fn set_raw<F: AsFd>(fd: &F, level: i32, name: i32, value: &[u8]) -> std::io::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `raw` is a valid open descriptor borrowed for this call, and
    // `value` points to `len` readable bytes that outlive the call.
    let rc = unsafe { libc::setsockopt(raw, level, name, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
