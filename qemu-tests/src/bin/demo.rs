fn main() {
    std::process::exit(qemu_tests::demo::run());
}
