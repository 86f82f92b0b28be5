fn main() {
    if std::process::id() == 1 {
        recovery::update::run();
    }
    std::process::exit(recovery::cli::main());
}
