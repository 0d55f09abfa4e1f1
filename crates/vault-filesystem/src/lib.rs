//! The filesystem vault: keys and certificates from PKCS#12 and PEM stores.
