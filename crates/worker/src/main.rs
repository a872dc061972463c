fn main() {
    eprintln!("worker: not built yet");
    std::process::exit(1);
}
