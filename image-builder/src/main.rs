fn main() {
    std::process::exit(image_builder::cli::main());
}
