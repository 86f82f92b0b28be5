fn main() {
    eprintln!(
        "bootloader-glue: the command line (request, status, cancel, unlock) is not built yet; \
         the library writes instructions"
    );
    std::process::exit(2);
}
