#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Flushing a file or a folder to disk (`fsync`), for the writers that must survive a power loss (data-set
/// folders, a coordinator's checkpoints under differential privacy). Each maps a failure to its own error type.
public enum FileSync {
    /// The step that failed.
    public enum Step: Sendable { case open, fsync }

    /// Flushes a file's contents, or a folder's entries, to disk; nil on success, else the failed step and errno.
    public static func sync(_ path: String) -> (step: Step, errno: Int32)? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return (.open, errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { return (.fsync, errno) }
        return nil
    }
}
