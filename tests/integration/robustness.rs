//! No input may crash or hang the server: random argument vectors, odd
//! bytes and huge values against every command.

use crate::common::*;

const COMMANDS: &[&str] = &[
    "LISTINGSTATS.INCR",
    "LISTINGSTATS.GET",
    "LISTINGSTATS.QUERY",
    "LISTINGSTATS.TOP",
    "LISTINGSTATS.METRIC.SET",
    "LISTINGSTATS.METRIC.DEL",
    "LISTINGSTATS.METRIC.LIST",
    "LISTINGSTATS.INGEST",
];

const WORDS: &[&str] = &[
    "BY",
    "DATE",
    "AT",
    "ID",
    "2155",
    "2015-12-22",
    "2015-13-40",
    "0000-01-01",
    "9999-12-31",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "e",
    "",
    " ",
    "{",
    "}",
    "ldp:sellPanel:addToCart:click",
    "*",
    "STRICT",
    "GROUPBY",
    "FORMAT",
    "JSON",
    "{\"name\":1}",
    "nan",
];

fn random_arg(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        0 => (0..rng.below(300)).map(|_| rng.below(256) as u8).collect(),
        1 => vec![b'7'; rng.below(100) as usize],
        _ => rng.pick(WORDS).as_bytes().to_vec(),
    }
}

#[test]
fn random_arguments_never_crash_the_server() {
    let server = Server::start();
    let mut c = server.conn();
    for day in 1..=31 {
        let key = format!("2015-12-{day:02}_2155");
        let _: i64 = redis::cmd("HSET")
            .arg(&key)
            .arg("cart::checkoutNow:click")
            .arg(day)
            .query(&mut c)
            .unwrap();
    }
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for _ in 0..3000 {
        let mut cmd = redis::cmd(rng.pick(COMMANDS));
        for _ in 0..rng.below(9) {
            cmd.arg(random_arg(&mut rng));
        }
        let reply: redis::RedisResult<Value> = cmd.query(&mut c);
        if let Err(e) = &reply {
            let text = error_text(e);
            assert!(
                text.starts_with("ERR") || text.starts_with("WRONGTYPE"),
                "{text}"
            );
            assert!(
                !text.contains("internal error"),
                "a panic was caught: {text}"
            );
        }
    }
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}
