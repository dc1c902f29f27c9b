struct P;
impl vptq_assets::Progress for P {
    fn asset_started(&self, a: &str) {
        eprintln!("start {a}");
    }
    fn step(&self, a: &str, m: &str) {
        eprintln!("  {a}: {m}");
    }
    fn asset_finished(&self, r: &vptq_assets::AssetReport) {
        eprintln!("done {r:?}");
    }
}
fn main() {
    let include_qwen = std::env::args().any(|a| a == "--qwen");
    let cache = vptq_assets::Cache::new("/root/.cache/vptq");
    let opts = vptq_assets::FetchOptions { include_qwen, ..Default::default() };
    match vptq_assets::fetch(&cache, &opts, &P) {
        Ok(r) => eprintln!("{r:#?}"),
        Err(e) => eprintln!("ERROR: {e}"),
    }
}
