#pragma once
/// \file
/// Test support: a temporary directory, and a throwaway cluster PKI made with OpenSSL (a CA and a
/// node certificate with the cluster name, plus an outsider signed by another CA). Used by the
/// TLS tests of the gRPC port (auth_test) and of relay links (mesh_test).

#include "cluster/auth.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

namespace mcpmesh::cluster::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "mcpmesh-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content,
                    fs::perms mode = fs::perms::owner_read | fs::perms::owner_write) const {
    std::string p = file(name);
    std::ofstream(p, std::ios::binary | std::ios::trunc) << content;
    fs::permissions(p, mode);
    return p;
  }

 private:
  fs::path path_;
};

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

/// A certificate for `key`, signed by `issuer`/`issuer_key` (self-signed when null). A CA when
/// `san` is null; else a node certificate for that DNS name, usable on both ends of TLS.
inline Cert make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key,
                      const char* san) {
  static std::atomic<long> serial{1};
  Cert cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial.fetch_add(1));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  add_ext(cert.get(), signer, NID_subject_key_identifier, "hash");
  add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  if (san == nullptr) {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), signer, NID_key_usage, "critical,digitalSignature");
    add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
    add_ext(cert.get(), signer, NID_subject_alt_name, (std::string("DNS:") + san).c_str());
  }
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0) return nullptr;
  return cert;
}

inline std::string pem_of(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

inline std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

inline std::string pem_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A throwaway cluster PKI in a temporary directory: a CA and a node certificate with the
/// cluster name, plus a second CA and a node certificate from it (an outsider).
struct ThrowawayPki {
  ThrowawayPki() {
    Pkey ca_key(EVP_EC_gen("P-256"));
    Pkey node_key(EVP_EC_gen("P-256"));
    Pkey other_ca_key(EVP_EC_gen("P-256"));
    Pkey outsider_key(EVP_EC_gen("P-256"));
    if (!ca_key || !node_key || !other_ca_key || !outsider_key) return;
    Cert ca = make_cert(ca_key.get(), "mcpmesh test CA", nullptr, nullptr, nullptr);
    Cert node = make_cert(node_key.get(), "n1", ca.get(), ca_key.get(), "mcpmesh-cluster");
    Cert other_ca = make_cert(other_ca_key.get(), "other CA", nullptr, nullptr, nullptr);
    Cert outsider = make_cert(outsider_key.get(), "outsider", other_ca.get(), other_ca_key.get(),
                              "mcpmesh-cluster");
    if (!ca || !node || !other_ca || !outsider) return;
    cluster = TlsFiles{dir.write("node.pem", pem_of(node.get())),
                       dir.write("node.key", pem_of(node_key.get())),
                       dir.write("ca.pem", pem_of(ca.get()))};
    // The outsider trusts the cluster CA (so it would accept the server) but is signed by
    // another one.
    outsider_files = TlsFiles{dir.write("outsider.pem", pem_of(outsider.get())),
                              dir.write("outsider.key", pem_of(outsider_key.get())), cluster.ca};
    ok = true;
  }

  TempDir dir;
  TlsFiles cluster, outsider_files;
  bool ok = false;
};

}  // namespace mcpmesh::cluster::testing
