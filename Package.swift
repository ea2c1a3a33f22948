// swift-tools-version: 6.1
import PackageDescription

// MARK: - Settings shared by every Swift target

// Release builds keep Swift's runtime checks (overflow, bounds, preconditions) in every target that handles
// bytes from another process or secrets: there a missed check must trap, not become undefined behaviour.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// The numeric kernels and the local data-set importer (tensors, the towers, import, indexes, evaluation) work on
/// shapes checked before they are called, and drop the checks in release builds: 22% more training steps per
/// second and 15% faster imports (`fedrec bench train-step`, `bench import`). Nothing here reads another
/// process's bytes; the files read here (model files, safetensors, HNSW indexes, data sets) are validated by
/// explicit tests that throw, which release builds keep, never by preconditions, which they drop.
let kernelSwiftSettings: [SwiftSetting] = swiftSettings + [
    .unsafeFlags(["-Ounchecked"], .when(configuration: .release))
]

// MARK: - Package

let package = Package(
    name: "fedrec",
    products: [
        .executable(name: "fedrec", targets: ["fedrec"]),
        .library(name: "FedRecTensor", targets: ["FedRecTensor"]),
        .library(name: "FedRecSecurity", targets: ["FedRecSecurity"]),
        .library(name: "FedRecData", targets: ["FedRecData"]),
        .library(name: "FedRecModel", targets: ["FedRecModel"]),
        .library(name: "FedRecEvaluation", targets: ["FedRecEvaluation"]),
        .library(name: "FedRecFederation", targets: ["FedRecFederation"]),
        .library(name: "FedRecRecall", targets: ["FedRecRecall"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // gRPC transport and process lifecycle (FedRecProtocol, FedRecCoordinator, FedRecClient)
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        // MARK: C shims (system libraries, headers only)
        .systemLibrary(
            name: "CFedRecBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CFedRecSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // Shamir secret sharing over GF(2^8) for secure aggregation (Debian libgfshare-dev).
        .systemLibrary(
            name: "CFedRecGFShare",
            pkgConfig: "libgfshare",
            providers: [.apt(["libgfshare-dev"])]
        ),
        // glibc's mallopt (header only) for the federation processes' allocator tuning.
        .systemLibrary(name: "CFedRecAllocator"),
        // Linux's renameat2(RENAME_EXCHANGE) (header only): folders replaced in one step.
        .systemLibrary(name: "CFedRecFiles"),
        // fedrec's HNSW graph (C, no dependencies). -O3 in every configuration so debug tests build a 100k graph
        // in seconds; AVX2+FMA kernels are chosen at run time (target attributes), with a portable fallback.
        .target(
            name: "CFedRecHNSW",
            cSettings: [.unsafeFlags(["-O3"])],
            linkerSettings: [.linkedLibrary("m")]
        ),
        // faiss (Debian libfaiss-dev, static) behind a small C API; every C++ exception becomes an error code.
        // Only `fedrec bench index --backends faiss` uses it, as the reference the HNSW graph is measured against.
        .target(
            name: "CFedRecFaiss",
            cxxSettings: [
                .unsafeFlags(["-O2", "-fopenmp", "-isystem", "/usr/lib/gcc/x86_64-linux-gnu/12/include"])
            ],
            linkerSettings: [
                .linkedLibrary("faiss"), .linkedLibrary("gomp"), .linkedLibrary("openblas"),
                .linkedLibrary("lapack"), .linkedLibrary("m"), .linkedLibrary("stdc++"),
            ]
        ),

        // MARK: Numeric core and security primitives
        .target(
            name: "FedRecTensor",
            dependencies: ["CFedRecBLAS"],
            swiftSettings: kernelSwiftSettings
        ),
        .target(
            name: "FedRecSecurity",
            dependencies: ["CFedRecSodium", "CFedRecGFShare"],
            swiftSettings: swiftSettings
        ),

        // MARK: Data, model, evaluation (pure logic, file formats)
        .target(
            name: "FedRecData",
            dependencies: ["FedRecSecurity", "FedRecTensor", "CFedRecFiles"],
            swiftSettings: kernelSwiftSettings
        ),
        .target(
            name: "FedRecModel",
            dependencies: ["FedRecTensor", "FedRecData"],
            swiftSettings: kernelSwiftSettings
        ),
        .target(
            name: "FedRecEvaluation",
            dependencies: ["FedRecModel", "FedRecData", "FedRecTensor"],
            swiftSettings: kernelSwiftSettings
        ),

        // MARK: Federation (strategies, sampling, round state machine, client training: pure logic, no I/O)
        .target(
            name: "FedRecFederation",
            dependencies: ["FedRecModel", "FedRecSecurity", "FedRecTensor", "FedRecData"],
            swiftSettings: swiftSettings
        ),

        // MARK: Recall (item index, recall strategy)
        .target(
            name: "FedRecRecall",
            dependencies: ["FedRecModel", "FedRecData", "FedRecTensor", "CFedRecHNSW", "CFedRecFaiss"],
            swiftSettings: kernelSwiftSettings
        ),

        // MARK: Wire protocol and the two processes (gRPC lives here and above, never below)
        .target(
            name: "FedRecProtocol",
            dependencies: [
                "FedRecFederation", "FedRecSecurity", "FedRecModel", "FedRecTensor",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Protos"],
            swiftSettings: swiftSettings
        ),
        // Structure-aware mutation fuzzing of every parser of untrusted bytes (`fedrec bench fuzz`, tests).
        .target(
            name: "FedRecFuzzing",
            dependencies: [
                "FedRecProtocol", "FedRecFederation", "FedRecSecurity", "FedRecTensor",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedRecCoordinator",
            dependencies: [
                "FedRecProtocol", "FedRecFederation", "FedRecSecurity", "FedRecModel", "FedRecEvaluation",
                "FedRecData", "FedRecTensor",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedRecClient",
            dependencies: [
                "FedRecProtocol", "FedRecFederation", "FedRecSecurity", "FedRecModel", "FedRecData", "FedRecTensor",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Command-line interface
        .executableTarget(
            name: "fedrec",
            dependencies: [
                "FedRecTensor", "FedRecSecurity", "FedRecData", "FedRecModel", "FedRecEvaluation", "FedRecFederation",
                "FedRecRecall", "FedRecProtocol", "FedRecFuzzing", "FedRecCoordinator", "FedRecClient",
                "CFedRecAllocator",
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests
        // Helpers shared by test targets (finite-difference gradient checks, random fixtures).
        .target(
            name: "FedRecTestSupport",
            dependencies: ["FedRecTensor"],
            path: "Tests/FedRecTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecTensorTests",
            dependencies: [
                "FedRecTensor", "FedRecTestSupport", .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecSecurityTests",
            dependencies: [
                "FedRecSecurity", "FedRecTensor", .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecFederationTests",
            dependencies: [
                "FedRecFederation", "FedRecModel", "FedRecData", "FedRecTensor", "FedRecSecurity",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecDataTests",
            dependencies: ["FedRecData", "CFedRecFiles"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecModelTests",
            dependencies: ["FedRecModel", "FedRecData", "FedRecTensor", "FedRecTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecEvaluationTests",
            dependencies: [
                "FedRecEvaluation", "FedRecModel", "FedRecData", "FedRecTensor",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecRecallTests",
            dependencies: [
                "FedRecRecall", "FedRecModel", "FedRecData", "FedRecTensor",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecProtocolTests",
            dependencies: [
                "FedRecProtocol", "FedRecFederation", "FedRecSecurity", "FedRecTensor", "FedRecFuzzing",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedRecIntegrationTests",
            dependencies: [
                "FedRecCoordinator", "FedRecClient", "FedRecProtocol", "FedRecFederation", "FedRecSecurity",
                "FedRecData", "FedRecEvaluation", "FedRecModel", "FedRecTensor",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "fedrecCLITests",
            dependencies: ["fedrec"],
            swiftSettings: swiftSettings
        ),
    ]
)
