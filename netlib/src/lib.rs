pub mod dns;

pub fn placeholder() {}
