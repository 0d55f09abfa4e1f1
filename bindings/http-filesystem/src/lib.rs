//! The http-filesystem proxy binding: maps http requests to filesystem streams.
