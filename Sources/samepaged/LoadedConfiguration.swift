import SamepageCore
import SamepageSystem

/// The command line, the environment and the config file, resolved (OptionResolver) and
/// checked (SamepagedSettings).
struct LoadedConfiguration {
    static let configVariable = "SAMEPAGE_CONFIG"

    var options: [String: ResolvedOption]
    var settings: SamepagedSettings
    /// The config file read, if any.
    var configPath: String?

    static func load(commandLine: [String: [String]], configPath: String?,
                     environment: [String: String]) throws(ConfigurationError) -> LoadedConfiguration {
        let path = configPath ?? environment[configVariable].flatMap { $0.isEmpty ? nil : $0 }
        var file: ConfigFile?
        if let path {
            let text: String
            do {
                text = try ProcessEnvironment.readTextFile(path)
            } catch {
                throw ConfigurationError(key: "config", "config file \(path) cannot be read: \(error)")
            }
            file = try ConfigFile.parse(text, path: path)
        }
        let options = try OptionResolver.resolve(commandLine: commandLine, environment: environment, configFile: file)
        return LoadedConfiguration(options: options, settings: try SamepagedSettings(options), configPath: path)
    }
}
