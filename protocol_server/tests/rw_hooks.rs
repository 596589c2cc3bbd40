//! `RwHooks` written against `std::net::TcpStream` alone: an XOR "cipher" over a real
//! loopback socket, with more bytes than the socket buffers hold so that the hooks see
//! partial writes and `WouldBlock` both ways.

mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;

use protocol_server::{RwHooks, Server};
use util::{hook, read_all, read_n, start, Hooks};

const KEY: u8 = 0x5a;

fn xor(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| b ^ KEY).collect()
}

/// XORs every byte read from and written to the socket.
struct Xor;

impl RwHooks for Xor {
    fn read(&mut self, mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        let n = stream.read(buf)?;
        buf[..n].iter_mut().for_each(|b| *b ^= KEY);
        Ok(n)
    }

    fn write(&mut self, mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        // XOR keeps no state, so a partial write just reports how many were taken.
        stream.write(&xor(buf))
    }
}

#[test]
fn xor_hooks_on_std_streams_transform_every_byte_both_ways() {
    const LEN: usize = 4 << 20;
    let hooks = Hooks {
        on_open: hook(|c| c.set_rw_hooks(Box::new(Xor))),
        // Answers each plain byte plus one: the reply proves the protocol saw plain bytes.
        on_data: hook(|c| {
            let plain = read_all(c);
            if !plain.is_empty() {
                let _ = c.write_move(plain.iter().map(|b| b.wrapping_add(1)).collect());
            }
        }),
        ..Hooks::default()
    };
    let running =
        start(Server::builder().threads(2).port(0).max_output(2 * LEN).protocol(move || hooks.clone()));
    let mut client = running.connect();
    let plain: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let wire = xor(&plain);
    let mut writer = client.try_clone().expect("clone the client socket");
    let sender = std::thread::spawn(move || writer.write_all(&wire).expect("the server reads everything"));
    let reply = read_n(&mut client, LEN);
    sender.join().expect("writer thread");
    let expected: Vec<u8> = plain.iter().map(|b| b.wrapping_add(1)).collect();
    assert!(reply == xor(&expected), "the reply went through both hooks, every byte, in order");
    running.stop();
}
