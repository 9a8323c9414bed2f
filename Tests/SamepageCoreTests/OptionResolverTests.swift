import Testing
@testable import SamepageCore

/// Precedence (command line > environment > config file > default) and the typed checks of
/// samepaged's settings, with no process, file or socket involved.
@Suite("Option precedence and settings")
struct OptionResolverTests {
    func file(_ text: String) throws(ConfigurationError) -> ConfigFile { try ConfigFile.parse(text, path: "sp.conf") }

    @Test func defaultsApplyWhenNothingIsGiven() throws {
        let options = try OptionResolver.resolve(commandLine: [:], environment: [:], configFile: nil)
        #expect(options["region-size"] == ResolvedOption(values: ["4G"], source: .defaultValue))
        #expect(options["socket"] == ResolvedOption(values: [], source: .defaultValue))
        let settings = try SamepagedSettings(options)
        #expect(settings.regionBytes == 4 << 30)
        #expect(settings.socket == nil)
        #expect(settings.metricsListen == nil)
        #expect(settings.limits == SessionLimits())
        #expect(settings.logLevel == "info")
        #expect(settings.drainTimeoutSeconds == 30)
        #expect(!settings.selfCheck)
    }

    @Test func commandLineBeatsEnvironmentBeatsFileBeatsDefault() throws {
        let options = try OptionResolver.resolve(
            commandLine: ["max-uploads": ["5"]],
            environment: ["SAMEPAGE_MAX_UPLOADS": "6", "SAMEPAGE_MAX_MAPPINGS": "7"],
            configFile: try file("max-uploads = 8\nmax-mappings = 9\nmax-objects = 10\n"))
        #expect(options["max-uploads"] == ResolvedOption(values: ["5"], source: .commandLine))
        #expect(options["max-mappings"] == ResolvedOption(values: ["7"], source: .environment(variable: "SAMEPAGE_MAX_MAPPINGS")))
        #expect(options["max-objects"] == ResolvedOption(values: ["10"], source: .configFile(path: "sp.conf", lines: [3])))
        #expect(options["max-unstable"]?.source == .defaultValue)
        let limits = try SamepagedSettings(options).limits
        #expect([limits.maxUploads, limits.maxMappings, limits.maxDomainObjects] == [5, 7, 10])
    }

    @Test func anEmptyEnvironmentVariableCountsAsUnset() throws {
        let options = try OptionResolver.resolve(commandLine: [:], environment: ["SAMEPAGE_REGION_SIZE": ""],
                                                 configFile: try file("region-size = 1G"))
        #expect(options["region-size"]?.values == ["1G"])
    }

    @Test func environmentVariableNamesFollowTheOptionNames() {
        #expect(OptionCatalog.spec(named: "region-size")?.environmentVariable == "SAMEPAGE_REGION_SIZE")
        #expect(OptionCatalog.spec(named: "allow-uid")?.environmentVariable == "SAMEPAGE_ALLOW_UID")
        #expect(OptionCatalog.spec(named: "metrics-listen")?.environmentVariable == "SAMEPAGE_METRICS_LISTEN")
        #expect(Set(OptionCatalog.all.map(\.environmentVariable)).count == OptionCatalog.all.count)
    }

    @Test func repeatableOptionsSplitListsAndTheHighestSourceWinsWhole() throws {
        let fromEnvironment = try OptionResolver.resolve(
            commandLine: [:], environment: ["SAMEPAGE_ALLOW_UID": "1000,1001 1002", "SAMEPAGE_DOMAIN": "a=1,2; b=3"],
            configFile: try file("allow-uid = 5\nallow-gid = 7, 8\nallow-gid = 9\n"))
        let settings = try SamepagedSettings(fromEnvironment)
        #expect(settings.allowUIDs == [1000, 1001, 1002], "the file's allow-uid is replaced, not extended")
        #expect(settings.allowGIDs == [7, 8, 9])
        #expect(settings.domains == ["a": [1, 2], "b": [3]])
        #expect(fromEnvironment["allow-gid"]?.source == .configFile(path: "sp.conf", lines: [2, 3]))

        let fromCommandLine = try OptionResolver.resolve(commandLine: ["allow-uid": ["42"]],
                                                         environment: ["SAMEPAGE_ALLOW_UID": "1000"], configFile: nil)
        #expect(try SamepagedSettings(fromCommandLine).allowUIDs == [42])
    }

    @Test func unknownKeysAndRepeatedSingleKeysInTheFileAreRefused() throws {
        #expect(throws: ConfigurationError(key: "regoin-size", "sp.conf:1: unknown key 'regoin-size'")) {
            try OptionResolver.resolve(commandLine: [:], environment: [:], configFile: try file("regoin-size = 1G"))
        }
        do {
            _ = try OptionResolver.resolve(commandLine: [:], environment: [:], configFile: try file("log-level = info\nlog-level = debug"))
            Issue.record("a repeated log-level was accepted")
        } catch {
            #expect(error.key == "log-level")
            #expect(error.message.contains("line 1"), "\(error)")
        }
    }

    @Test func unknownEnvironmentVariablesAreIgnored() throws {
        // SAMEPAGE_* also carries the clients' and the tests' own settings.
        let options = try OptionResolver.resolve(commandLine: [:], environment: ["SAMEPAGE_LOAD_OPS": "5"], configFile: nil)
        #expect(options["region-size"]?.source == .defaultValue)
    }

    @Test("each bad value is refused naming its key and its source", arguments: [
        ("region-size", "12Q"), ("region-size", "100T"), ("max-page-sharing", "1"), ("socket-mode", "9"),
        ("allow-uid", "alice"), ("domain", "team"), ("max-uploads", "0"), ("max-objects", "-3"),
        ("log-level", "loud"), ("metrics-listen", "localhost:9464"), ("metrics-listen", "unix:relative"),
        ("drain-timeout", "soon"), ("self-check", "maybe"),
    ])
    func badValues(key: String, value: String) throws {
        let variable = OptionCatalog.spec(named: key)!.environmentVariable
        let options = try OptionResolver.resolve(commandLine: [:], environment: [variable: value], configFile: nil)
        do {
            _ = try SamepagedSettings(options)
            Issue.record("\(key) = \(value) was accepted")
        } catch {
            #expect(error.key == key)
            #expect(error.message.hasPrefix(key + " '"), "\(error)")
            #expect(error.message.contains(variable), "\(error)")
        }
    }

    @Test func aUidInTwoDomainsIsRefused() throws {
        let options = try OptionResolver.resolve(commandLine: ["domain": ["a=1,2", "b=2"]], environment: [:], configFile: nil)
        #expect(throws: ConfigurationError.self) { try SamepagedSettings(options) }
    }

    @Test func theReportShowsEveryOptionWithItsSource() throws {
        let options = try OptionResolver.resolve(commandLine: ["log-level": ["debug"]],
                                                 environment: ["SAMEPAGE_ALLOW_UID": "1,2"],
                                                 configFile: try file("region-size = 1G"))
        let lines = EffectiveConfigurationReport.lines(options, socketDefault: "/run/x.sock")
        #expect(lines.count == OptionCatalog.all.count)
        #expect(lines.contains { $0.hasPrefix("log-level ") && $0.hasSuffix("= debug    [command line]") })
        #expect(lines.contains { $0.hasPrefix("allow-uid ") && $0.contains("= 1, 2") && $0.contains("[environment SAMEPAGE_ALLOW_UID]") })
        #expect(lines.contains { $0.hasPrefix("region-size ") && $0.contains("[config file sp.conf line 1]") })
        #expect(lines.contains { $0.hasPrefix("socket ") && $0.contains("= /run/x.sock    [default]") })
    }

    @Test func listenAddresses() {
        #expect(ListenAddress.parse("127.0.0.1:9464") == .tcp(address: [127, 0, 0, 1], port: 9464))
        #expect(ListenAddress.parse("0.0.0.0:0") == .tcp(address: [0, 0, 0, 0], port: 0))
        #expect(ListenAddress.parse("unix:/run/sp/metrics.sock") == .unix(path: "/run/sp/metrics.sock"))
        for bad in ["127.0.0.1", "127.0.0.1:99999", "256.0.0.1:80", "1.2.3:80", "localhost:80", "unix:", "unix:x.sock",
                    "unix:/" + String(repeating: "a", count: 200), ":80", "1.2.3.4:-1"] {
            #expect(ListenAddress.parse(bad) == nil, "\(bad)")
        }
        #expect(ListenAddress.parse("10.0.0.1:80")?.description == "10.0.0.1:80")
    }
}
