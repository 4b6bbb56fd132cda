//! SIGINT/SIGTERM by `sigwait` instead of handlers: block them early (threads
//! inherit the mask), then wait for one where the program is ready to exit.

fn term_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Block SIGINT, SIGTERM and SIGHUP in the calling thread (and so in every
/// thread it starts afterwards).
pub fn block_term() {
    let set = term_set();
    // SAFETY: a valid set; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Wait until one of the blocked signals arrives; returns its number.
pub fn wait_term() -> i32 {
    let set = term_set();
    let mut sig = 0;
    loop {
        // SAFETY: a valid set and out-pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            return sig;
        }
    }
}
