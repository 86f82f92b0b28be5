fn main() {
    std::process::exit(bootloader_glue::cli::main());
}
