import ArgumentParser
import FedRecSecurity
import Foundation

/// `fedrec keys`: identity key files for the coordinator and clients.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create and inspect identity keys (Ed25519 signing + X25519 key agreement).",
        discussion: """
            'generate' writes NAME.key (secrets, mode 0600) and NAME.pub (one shareable line). The coordinator's \
            allow-list is the concatenation of the clients' .pub files: cat clients/*.pub > allow-list.
            """,
        subcommands: [Generate.self, Show.self]
    )

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate an identity: DIR/NAME.key (mode 0600) and DIR/NAME.pub.")

        @Option(help: "Directory to write the key files to (created with mode 0700 when missing).")
        var out: String

        @Option(help: "Identity name, used as the client id (A-Z a-z 0-9 . _ -, at most 64).")
        var name: String = "identity"

        @Option(parsing: .unconditional, help: "Generate this many identities, named NAME-0001, NAME-0002, ...")
        var count: Int?

        @Flag(help: "Replace existing key files.")
        var force = false

        var names: [String] {
            guard let count else { return [name] }
            let width = max(4, String(count).count)
            return (1...max(count, 1)).map { i in
                let digits = String(i)
                return "\(name)-\(String(repeating: "0", count: width - digits.count))\(digits)"
            }
        }

        func validate() throws {
            if let count, count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
            guard let last = names.last, PublicIdentity.isValidName(name), PublicIdentity.isValidName(last) else {
                throw ValidationError(
                    "--name must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with '.' or '-'), got '\(name)'")
            }
        }

        func run() async throws {
            try FileManager.default.createDirectory(
                atPath: out, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for name in names {
                let identity = try Identity.generate(name: name)
                let paths = try KeyFiles.write(identity, directory: out, overwrite: force)
                print("\(paths.secretPath) (secret, mode 0600)")
                print("\(paths.publicPath): \(identity.publicIdentity.line)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the public identities in a key file, .pub file or allow-list (never secrets).")

        @Argument(help: "A .key, .pub or allow-list file.")
        var file: String

        func run() async throws {
            let identities: [PublicIdentity]
            if try KeyFiles.isSecretKeyFile(path: file) {
                identities = [try KeyFiles.loadIdentity(path: file).publicIdentity]
            } else if file.hasSuffix(".key") {
                // Read as an allow-list, it would be refused for not holding public lines, which misleads.
                throw ValidationError(
                    "\(file) is not a fedrec key file (its first line is not '\(KeyFiles.secretHeader)'); "
                        + "'fedrec keys generate' writes them")
            } else {
                identities = try KeyFiles.loadAllowList(path: file).entries
                // An empty file parses as an empty allow-list; saying nothing would look like success.
                guard !identities.isEmpty else {
                    throw ValidationError("\(file) holds no public identity (an empty file or allow-list)")
                }
            }
            for identity in identities {
                print("\(identity.line)  # fingerprint \(identity.fingerprint)")
            }
        }
    }
}
