import ArgumentParser
import FedRecModel
import Foundation

/// Checks made on an output path before any work, so a long run never ends in a write that fails or replaces
/// something that was not a result of the same kind.
enum OutputPaths {
    /// A model file to write at `path` (`option` names it in messages): its folder must exist, and what is
    /// there already may only be a fedrec model file (an earlier result), never a folder or another file.
    static func checkModelFile(_ path: String, option: String = "--out") throws {
        guard !path.isEmpty else { throw ValidationError("\(option) is empty: name the model file to write") }
        try checkFolderExists(of: path, option: option)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
        guard !isDirectory.boolValue else {
            throw ValidationError("\(option) '\(path)' is a folder; name the model file to write")
        }
        guard isModelFile(path) else {
            throw ValidationError(
                "\(option) '\(path)' exists and is not a fedrec model file; it would be replaced: remove it or choose "
                    + "another path")
        }
    }

    /// Any other file to write at `path`: its folder must exist and `path` must not be a folder.
    static func checkFile(_ path: String, option: String) throws {
        guard !path.isEmpty else { throw ValidationError("\(option) is empty: name the file to write") }
        try checkFolderExists(of: path, option: option)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ValidationError("\(option) '\(path)' is a folder; name the file to write")
        }
    }

    private static func checkFolderExists(of path: String, option: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        let resolved = folder.isEmpty ? "." : folder
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("\(option) '\(path)': the folder '\(resolved)' does not exist")
        }
    }

    /// Whether `path` starts like a fedrec model file: a safetensors header whose metadata says
    /// `format: fedrec-model`. Reads the header only.
    static func isModelFile(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let prefix = try? handle.read(upToCount: 8), prefix.count == 8 else { return false }
        let length = prefix.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard length > 0, length <= 1 << 30, let header = try? handle.read(upToCount: Int(length)),
            header.count == Int(length),
            let object = try? JSONSerialization.jsonObject(with: header) as? [String: Any],
            let metadata = object["__metadata__"] as? [String: Any]
        else { return false }
        return metadata["format"] as? String == ModelFile.format
    }
}
