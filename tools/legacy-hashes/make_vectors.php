<?php
/**
 * Legacy password-hash test vectors: the PHP half (Magento 2, Magento 1 / OpenMage, PHP bcrypt).
 *
 * Needs: PHP >= 8.1 CLI with the sodium and hash extensions (Debian: `apt-get install -y php-cli`;
 * vectors in tests/vectors/legacy-hashes.json were made with PHP 8.2 + libsodium 1.0.18).
 *
 * Normally run by make_vectors.py, which feeds the shared password set on stdin and merges the
 * output.  Stand-alone:
 *
 *     echo '{"passwords": {"ascii": "password"}}' | php tools/legacy-hashes/make_vectors.php
 *
 * Output: one JSON object on stdout: {"php": ..., "sodium": ..., "vectors": [...]}.
 *
 * The Magento 2 functions below are an independent re-implementation of the semantics of
 * Magento\Framework\Encryption\Encryptor (getHash, isValidHash, explodePasswordHash, getArgonHash)
 * and of Magento\Customer\Console\Command\UpgradeHashAlgorithmCommand, written from reading that
 * code; the real PHP primitives (md5(), hash('sha256'), sodium_crypto_pwhash(), crypt()) do the
 * hashing, exactly as in Magento.  The script asserts that it reproduces the vectors published in
 * Magento's own unit tests before it emits anything.  See docs/legacy-hashes.md.
 */

declare(strict_types=1);

error_reporting(E_ALL);
set_error_handler(static function (int $no, string $msg): bool {
    throw new ErrorException($msg, 0, $no);
});

/** Magento 2 customer_entity.password_hash: "hash:salt:version[:version...]". */
final class Magento2
{
    public const HASH_MD5 = 0;
    public const HASH_SHA256 = 1;
    public const HASH_ARGON2ID13 = 2;
    public const HASH_ARGON2ID13_AGNOSTIC = 3;

    /** Same pattern Magento uses to recognise the parameterised Argon2id version "3_<len>_<ops>_<mem>". */
    public const AGNOSTIC_RE = '/^3\_(?<seed>\d+)\_(?<ops>\d+)\_(?<mem>\d+)$/';

    /** Output length / opslimit / memlimit that Magento takes from PHP's sodium constants. */
    public static function defaults(): array
    {
        return [SODIUM_CRYPTO_SIGN_SEEDBYTES, SODIUM_CRYPTO_PWHASH_OPSLIMIT_INTERACTIVE, SODIUM_CRYPTO_PWHASH_MEMLIMIT_INTERACTIVE];
    }

    /** The 16-byte libsodium salt: shorter salts are repeated (str_pad with itself), longer ones cut. */
    public static function argonSalt(string $salt): string
    {
        $want = SODIUM_CRYPTO_PWHASH_SALTBYTES;
        $have = strlen($salt);
        if ($have < $want) {
            // str_pad('', ..., '') throws ValueError in PHP 8, as it does inside Magento.
            return str_pad($salt, $want, $salt);
        }
        return $have > $want ? substr($salt, 0, $want) : $salt;
    }

    public static function argon(string $data, string $salt, int $outLen, int $ops, int $mem): string
    {
        return bin2hex(sodium_crypto_pwhash(
            $outLen,
            $data,
            self::argonSalt($salt),
            $ops,
            $mem,
            SODIUM_CRYPTO_PWHASH_ALG_ARGON2ID13
        ));
    }

    public static function simple(string $data, int $version): string
    {
        return match ($version) {
            self::HASH_MD5 => md5($data),
            self::HASH_SHA256 => hash('sha256', $data),
            default => throw new InvalidArgumentException("unknown simple hash version $version"),
        };
    }

    /** One element of the version list, applied to the running value, as isValidHash does it. */
    public static function step(string $version, string $value, string $salt): string
    {
        if (preg_match(self::AGNOSTIC_RE, $version, $m)) {
            return self::argon($value, $salt, (int)$m['seed'], (int)$m['ops'], (int)$m['mem']);
        }
        // Magento casts with (int): "2" -> 2, "" -> 0, "1x" -> 1, "3" -> 3 (which then throws).
        if ((int)$version === self::HASH_ARGON2ID13) {
            [$len, $ops, $mem] = self::defaults();
            return self::argon($value, $salt, $len, $ops, $mem);
        }
        return self::simple($salt . $value, (int)$version);
    }

    /** Build "hash:salt:v1:v2..." by applying each version in order (isValidHash semantics). */
    public static function chain(string $password, string $salt, array $versions): string
    {
        $value = $password;
        foreach ($versions as $v) {
            $value = self::step((string)$v, $value, $salt);
        }
        return implode(':', [$value, $salt, implode(':', array_map('strval', $versions))]);
    }

    /**
     * isValidHash without the crypt-key fallback: Magento falls back to HMAC(password, crypt/key)
     * when the string does not split into 3 parts or any step throws; that can never match an
     * imported hash, so here it is just "false".
     */
    public static function verify(string $password, string $stored): bool
    {
        $parts = explode(':', $stored, 3);
        if (count($parts) !== 3) {
            return false;
        }
        [$hash, $salt, $versions] = $parts;
        try {
            $value = $password;
            foreach (explode(':', $versions) as $v) {
                $value = self::step($v, $value, $salt);
            }
        } catch (Throwable) {
            return false;
        }
        return hash_equals($hash, $value);
    }

    /** Encryptor::getHash($password, $salt, $version) for an explicit string salt (2.4 behaviour). */
    public static function getHash(string $password, string $salt, int $version): string
    {
        if ($version < 0 || $version > self::HASH_ARGON2ID13_AGNOSTIC) {
            $version = self::HASH_ARGON2ID13_AGNOSTIC;
        }
        if ($version === self::HASH_ARGON2ID13 || $version === self::HASH_ARGON2ID13_AGNOSTIC) {
            [$len, $ops, $mem] = self::defaults();
            $label = $version === self::HASH_ARGON2ID13_AGNOSTIC ? implode('_', [3, $len, $ops, $mem]) : '2';
            return implode(':', [self::argon($password, $salt, $len, $ops, $mem), $salt, $label]);
        }
        return implode(':', [self::simple($salt . $password, $version), $salt, (string)$version]);
    }

    /**
     * customer:hash:upgrade as shipped in 2.4 (also Mage-OS): re-hash the stored *hash string* with
     * the latest algorithm using the same salt, then append the new version label to the history.
     */
    public static function upgrade24(string $stored): string
    {
        [$hash, $salt, $versions] = explode(':', $stored, 3);
        [$newHash, $newSalt, $newVersion] = explode(':', self::getHash($hash, $salt, self::HASH_ARGON2ID13_AGNOSTIC), 3);
        return implode(':', [$newHash, $newSalt, $versions . ':' . $newVersion]);
    }

    /** The 2.3 command: latest version was 2 (plain Argon2ID13), appended as ":2". */
    public static function upgrade23(string $stored): string
    {
        [$hash, $salt, $versions] = explode(':', $stored, 3);
        [$newHash, $newSalt] = explode(':', self::getHash($hash, $salt, self::HASH_ARGON2ID13), 3);
        return implode(':', [$newHash, $newSalt, $versions . ':' . self::HASH_ARGON2ID13]);
    }
}

/** Magento 1 CE / EE (Enterprise_Pci) / OpenMage Mage_Core_Model_Encryption. */
final class Magento1
{
    /** getHash(): hash(salt . password) . ':' . salt; CE uses md5, EE and OpenMage sha256. */
    public static function salted(string $algo, string $password, string $salt): string
    {
        return hash($algo, $salt . $password) . ':' . $salt;
    }

    /** OpenMage validateHash(): bcrypt first, then sha512, sha256, md5 of "hash" or "hash:salt" (split once). */
    public static function verifyOpenMage(string $password, string $stored): bool
    {
        if (strlen($password) > 256) { // MAXIMUM_PASSWORD_LENGTH
            return false;
        }
        if (password_verify($password, $stored)) {
            return true;
        }
        foreach (['sha512', 'sha256', 'md5'] as $algo) {
            $parts = explode(':', $stored, 2);
            $calc = count($parts) === 1 ? hash($algo, $password) : hash($algo, $parts[1] . $password);
            if (hash_equals($calc, $parts[0])) {
                return true;
            }
        }
        return false;
    }

    /** CE 1.x validateHash(): md5 only, 1 or 2 parts (split on every ':'), anything else is an error. */
    public static function verifyCE(string $password, string $stored): bool
    {
        $parts = explode(':', $stored);
        return match (count($parts)) {
            1 => hash_equals(md5($password), $stored),
            2 => hash_equals(md5($parts[1] . $password), $parts[0]),
            default => false,
        };
    }
}

function bcrypt_salt22(string $raw16): string
{
    // bcrypt's own base64 alphabet; 16 bytes -> 22 chars (canonical: last char carries 2 bits).
    $std = rtrim(base64_encode($raw16), '=');
    return strtr($std, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/',
        './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789');
}

function must(bool $ok, string $what): void
{
    if (!$ok) {
        fwrite(STDERR, "make_vectors.php: check failed: $what\n");
        exit(1);
    }
}

$input = json_decode(stream_get_contents(STDIN) ?: '{}', true, 512, JSON_THROW_ON_ERROR);
$P = $input['passwords'] ?? [];
$P += [
    'ascii' => 'password',
    'unicode' => 'pässwörd-日本語-비밀번호',
    'empty' => '',
    'long' => str_repeat('correct horse battery staple ', 4) . 'END',
    'delims' => 'pa:ss$wo rd:0',
    'bcrypt72' => str_repeat('0123456789abcdef', 4) . '01234567',
];
$P['bcrypt80'] = $P['bcrypt72'] . 'EXTRA-IGNORED-BY-BCRYPT';
$P['bcrypt_split'] = str_repeat('a', 71) . 'é';

$out = [];
$add = static function (string $format, string $password, string $hash, string $note, bool $valid = true, bool $default = false, string $ref = 'php') use (&$out): void {
    $out[] = [
        'format' => $format,
        'password' => $password,
        'hash' => $hash,
        'valid' => $valid,
        'production_default' => $default,
        'reference' => $ref,
        'note' => $note,
    ];
};

// ---------------------------------------------------------------------------------------------
// Self-check against the vectors in Magento's EncryptorTest (lib/internal/Magento/Framework/
// Encryption/Test/Unit/EncryptorTest.php).
must(Magento2::getHash('password', 'salt', 0) === '67a1e09bb1f83f5007dc119c14d663aa:salt:0', 'Magento unit-test md5 vector');
must(Magento2::getHash('password', 'salt', 1) === '13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322:salt:1', 'Magento unit-test sha256 vector');
must(Magento2::defaults() === [32, 2, 67108864], 'sodium constants are the ones Magento 2.4 writes (32/2/64MiB)');
must(SODIUM_CRYPTO_PWHASH_SALTBYTES === 16, 'SODIUM_CRYPTO_PWHASH_SALTBYTES is 16');

$S32 = 'Hy6nSfZtJk2ePq8wXcV4bR7mLd3GaN9u';   // like Math\Random::getRandomString(32)
$S32b = 'q0WzE5rTyU8iOp3AsDf7GhJk1LzXcV9b';
$S16 = 'Zx4Pq7Lm2Nv8Rt5W';                   // 2.3 generated 16-char salts for Argon
$M1SALT2 = 'ab';                               // Magento 1 CE used 2-char salts for years

$m2 = static function (string $password, string $hash, string $note, bool $valid = true, bool $default = false) use ($add): void {
    must(Magento2::verify($password, $hash) === $valid, "magento2 self-verify: $note");
    $add('magento2', $password, $hash, $note, $valid, $default);
};

$m2('password', '67a1e09bb1f83f5007dc119c14d663aa:salt:0', "Magento's own EncryptorTest vector: md5('salt' . 'password'), version 0.");
$m2('password', '13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322:salt:1', "Magento's own EncryptorTest vector: sha256('salt' . 'password'), version 1.");
foreach (['ascii', 'unicode', 'empty'] as $k) {
    $m2($P[$k], Magento2::getHash($P[$k], $S32, 0), "getHash(pw, 32-char salt, 0): md5(salt . password) lowercase hex, version 0 ($k).");
}
foreach (['ascii', 'unicode', 'long', 'delims'] as $k) {
    $m2($P[$k], Magento2::getHash($P[$k], $S32, 1), "getHash(pw, 32-char salt, 1): sha256(salt . password) lowercase hex, version 1 ($k).");
}
$m2($P['ascii'], Magento2::getHash($P['ascii'], '', 1), 'Empty salt is legal for the simple versions: sha256("" . password), stored as "hex::1".');

// Version 2: plain Argon2ID13 with the fixed libsodium "interactive" cost (2.3 wrote 16-char salts).
foreach (['ascii', 'unicode'] as $k) {
    $m2($P[$k], Magento2::getHash($P[$k], $S16, 2), "Version 2 (Magento 2.3): Argon2id v1.3, t=2, m=64 MiB, p=1, 32-byte output as hex; salt = the 16-char salt string's bytes ($k).", true, true);
}
// Version 3_<len>_<ops>_<mem>: 2.4's default, salt is 32 chars of which the first 16 bytes are used.
foreach (['ascii', 'unicode'] as $k) {
    $m2($P[$k], Magento2::getHash($P[$k], $S32, 3), "Magento 2.4 default \"3_32_2_67108864\": Argon2id, 32-byte output, t=2, m=67108864 bytes (65536 KiB), p=1; Argon salt = first 16 bytes of the 32-char salt ($k).", true, true);
}
// Real 2.4 hashes published as samples in public code; reproduced here, not generated.
$m2('Password@', 'ab5ebf8d273b085b6a60336198e0a5a2090fdc3e0606a678315c7274ab06e046:5PiKJRn28bBKoFMopMaaKuV47aJ6GzVg:3_32_2_67108864', 'A Magento 2.4 hash published as a sample in public code (made by a real store, not by this script); verified here.', true, true);
$m2('Password@2022', 'abf1de8d537a1270237b9b56c8db9c67aeece6d89639a64d5ffd7264262541ab:PNK7gwTSnTc9L8AXZEvgZQ4SA66qirus:3_32_2_67108864', 'Another published Magento 2.4 sample hash (a fixture in public code); verified here.', true, true);

// Parameterised version with cheap parameters: Magento never writes these (it always uses the
// sodium constants) but isValidHash parses and honours any digits, so they exercise the parser.
$cheap = [
    ['ascii', $S32, '3_32_2_1048576', 'out 32 bytes, t=2, m=1048576 bytes (1024 KiB)'],
    ['unicode', $S32b, '3_16_1_65536', 'out 16 bytes (32 hex chars), t=1, m=65536 bytes (64 KiB)'],
    ['delims', $S32, '3_64_3_262144', 'out 64 bytes (128 hex chars), t=3, m=262144 bytes (256 KiB)'],
    ['long', $S16, '3_32_2_1048576', 'salt exactly 16 bytes, used as is'],
    ['ascii', 'salt', '3_32_2_1048576', 'salt "salt" (4 bytes) is padded by repeating itself to "saltsaltsaltsalt"'],
    ['unicode', 'abcdefg', '3_32_1_65536', 'salt "abcdefg" (7 bytes) is padded by repetition to "abcdefgabcdefgab" (str_pad with the salt itself)'],
];
foreach ($cheap as [$k, $salt, $ver, $what]) {
    $m2($P[$k], Magento2::chain($P[$k], $salt, [$ver]), "Cheap parameterised Argon2id, built the way isValidHash recomputes it: $what ($k).");
}

// Upgrade chains.  Each version is applied to the previous step's lowercase-hex output, with the
// same salt every time; the stored hash is the last step's output.
$m2($P['ascii'], Magento2::chain($P['ascii'], $S32, [0, 1]), 'Chain "0:1": sha256(salt . md5(salt . password)). Verified step by step by isValidHash (2.1+).');
$m2($P['unicode'], Magento2::chain($P['unicode'], $M1SALT2, [0, 1]), 'Chain "0:1" on a migrated Magento 1 customer (2-char salt).');
$m2($P['ascii'], Magento2::upgrade23(Magento2::getHash($P['ascii'], $S16, 1)), 'Chain "1:2" made by the 2.3 customer:hash:upgrade: argon2id(sha256hex, salt) with the fixed 2.3 parameters.', true, true);
$m2($P['unicode'], Magento2::upgrade23(Magento2::getHash($P['unicode'], $M1SALT2, 0)), 'Chain "0:2" made by the 2.3 upgrade from a migrated Magento 1 md5 hash with salt "ab" (Argon salt "abababababababab").', true, true);
$m2($P['unicode'], Magento2::upgrade24(Magento2::getHash($P['unicode'], $S32, 1)), 'Chain "1:3_32_2_67108864" made by the 2.4 customer:hash:upgrade (re-hash of the sha256 hex with the latest algorithm).', true, true);
$m2($P['ascii'], Magento2::upgrade24(Magento2::getHash($P['ascii'], $M1SALT2, 0)), 'Chain "0:3_32_2_67108864": 2.4 upgrade of a migrated Magento 1 md5 hash, 2-char salt padded to 16 bytes by repetition.', true, true);
$m2($P['ascii'], Magento2::upgrade24(Magento2::getHash($P['ascii'], $S16, 2)), 'Chain "2:3_32_2_67108864": a 2.3 Argon hash upgraded again by 2.4 (Argon2id applied to the previous Argon hex).', true, true);
$m2($P['unicode'], Magento2::chain($P['unicode'], $M1SALT2, [0, '3_32_1_65536']), 'Cheap chain "0:3_32_1_65536" (isValidHash semantics, not a Magento default).');
$m2($P['ascii'], Magento2::chain($P['ascii'], $S32, [1, '3_32_2_1048576', '3_16_1_65536']), 'Cheap three-step chain "1:3_32_2_1048576:3_16_1_65536": each Argon step hashes the previous hex string.');
$m2($P['delims'], Magento2::chain($P['delims'], $S32b, [0, 1, '3_32_1_65536']), 'Cheap chain "0:1:3_32_1_65536"; the password itself contains ":" and "$", which never matter (only the stored string is split).');

// Negative vectors: strings Magento's isValidHash rejects.
$h = Magento2::upgrade24(Magento2::getHash($P['ascii'], $S32, 1));
[$hh, $ss] = explode(':', $h, 3);
$m2($P['ascii'], "$hh:$ss:1:3", 'INVALID: a bare "3" version (no _len_ops_mem) is not matched by the agnostic pattern and (int)"3" is not 2, so isValidHash throws and fails. Such a string appears if an upgrade appends getLatestHashVersion() instead of the new label.', false);
$good = Magento2::getHash($P['ascii'], $S32, 1);
$m2('Password', $good, 'INVALID: wrong password (case differs) for a valid version-1 hash.', false);
$m2($P['ascii'], strtoupper(explode(':', $good)[0]) . ':' . $S32 . ':1', 'INVALID: upper-case hex. Magento compares the exact lowercase hex string.', false);
$m2($P['ascii'], explode(':', Magento2::getHash($P['ascii'], $S32, 1), 2)[0] . ':' . $S32, 'INVALID as a Magento 2 hash: only two parts. Magento 2.3+ needs hash:salt:version (this is the Magento 1 layout; 2.0.5 setup rewrote such rows to :0 or :1 by hash length).', false);
$m2($P['ascii'], hash('sha256', $S32 . $P['ascii']) . ':' . $S32 . ':4', 'INVALID: unknown version 4 throws in generateSimpleHash.', false);
$m2($P['ascii'], str_repeat('0', 64) . '::3_32_2_1048576', 'INVALID: empty salt with an Argon version: str_pad with an empty pad string throws (PHP 8), so Magento fails it.', false);

// ---------------------------------------------------------------------------------------------
// Magento 1 / OpenMage.
$m1 = static function (string $password, string $hash, string $note, bool $valid = true, bool $default = false, bool $ce = false) use ($add): void {
    must(Magento1::verifyOpenMage($password, $hash) === $valid, "magento1 OpenMage self-verify: $note");
    if ($ce) {
        must(Magento1::verifyCE($password, $hash) === $valid, "magento1 CE self-verify: $note");
    }
    $add('magento1', $password, $hash, $note, $valid, $default);
};
foreach (['ascii', 'unicode', 'empty'] as $k) {
    $m1($P[$k], Magento1::salted('md5', $P[$k], $M1SALT2), "CE getHash(pw, 2): md5(salt . password) . ':' . salt, 2-char salt ($k).", true, false, true);
}
$m1($P['ascii'], Magento1::salted('md5', $P['ascii'], $S32), "CE 1.9 customer: md5(salt . password) . ':' . salt with a 32-char salt.", true, false, true);
$m1($P['ascii'], md5($P['ascii']), 'Unsalted md5 hex (no colon): accepted by CE, EE and OpenMage validateHash.', true, false, true);
foreach (['ascii', 'unicode', 'long'] as $k) {
    $m1($P[$k], Magento1::salted('sha256', $P[$k], $S32), "EE (Enterprise_Pci) / OpenMage getHash: sha256(salt . password) . ':' . salt ($k).");
}
$m1($P['unicode'], hash('sha256', $P['unicode']), 'Unsalted sha256 hex: accepted by EE and OpenMage.');
$m1($P['ascii'], Magento1::salted('sha512', $P['ascii'], $S32), 'OpenMage also accepts sha512(salt . password) . ":" . salt (HASH_VERSION_SHA512).');
$spaced = '  spaced out  ';
$trimHash = Magento1::salted('sha256', trim($spaced), $S32);
$m1(trim($spaced), $trimHash, 'OpenMage Customer::hashPassword() trims the password before hashing; this hash was made from "  spaced out  ".');
$m1($spaced, $trimHash, 'INVALID: OpenMage validateHash() does not trim, so the untrimmed password fails against the trimmed hash.', false);
$bsalt = bcrypt_salt22(hex2bin('00112233445566778899aabbccddeeff'));
foreach (['ascii', 'unicode'] as $k) {
    $hb = crypt($P[$k], '$2y$10$' . $bsalt);
    $m1($P[$k], $hb, "OpenMage admin bcrypt (Helper::getHashPassword): password_hash(PASSWORD_DEFAULT) = \$2y\$, cost 10 on PHP < 8.4 (made with crypt() and a fixed salt) ($k).", true, true);
}
$m1('Password', Magento1::salted('md5', $P['ascii'], $M1SALT2), 'INVALID: wrong password.', false, false, true);

// ---------------------------------------------------------------------------------------------
// PHP bcrypt: crypt() is what password_hash()/password_verify() call (Laravel, OpenMage, Symfony on PHP).
$bc = static function (string $password, string $hash, string $note, bool $valid = true, bool $default = false) use ($add): void {
    must(password_verify($password, $hash) === $valid, "bcrypt password_verify: $note");
    $add('bcrypt', $password, $hash, $note, $valid, $default, 'php');
};
$bs = [
    bcrypt_salt22(hex2bin('0f1e2d3c4b5a69788796a5b4c3d2e1f0')),
    bcrypt_salt22(hex2bin('deadbeefcafebabe0123456789abcdef')),
    bcrypt_salt22(hex2bin('a5a5a5a55a5a5a5a0000ffff1111eeee')),
];
$bc($P['ascii'], crypt($P['ascii'], '$2y$04$' . $bs[0]), 'PHP crypt $2y$ cost 4 (ascii).');
$bc($P['unicode'], crypt($P['unicode'], '$2y$05$' . $bs[1]), 'PHP crypt $2y$ cost 5, UTF-8 bytes of the password (unicode).');
$bc($P['empty'], crypt($P['empty'], '$2y$04$' . $bs[2]), 'PHP crypt $2y$ cost 4, empty password.');
foreach (['2a', '2b', '2y'] as $p) {
    $bc($P['unicode'], crypt($P['unicode'], "\$$p\$06\$" . $bs[0]), "PHP crypt \$$p\$ cost 6: for any valid UTF-8 password \$2a\$, \$2b\$ and \$2y\$ give the same 31-char checksum for the same salt.");
}
$bc($P['long'], crypt($P['long'], '$2y$07$' . $bs[1]), 'PHP crypt $2y$ cost 7, 119-byte password: only the first 72 bytes count.');
$h80 = crypt($P['bcrypt80'], '$2y$05$' . $bs[2]);
must($h80 === crypt($P['bcrypt72'], '$2y$05$' . $bs[2]), 'PHP bcrypt truncates at 72 bytes');
$bc($P['bcrypt80'], $h80, '95-byte password; PHP bcrypt silently truncates to 72 bytes.');
$bc($P['bcrypt72'], $h80, 'Same hash, only the 72-byte prefix of the previous password: verifies too (truncation).');
$bc($P['bcrypt_split'], crypt($P['bcrypt_split'], '$2y$05$' . $bs[0]), '73-byte password (71 x "a" + "é"): the 72-byte cut falls inside "é" (C3 A9); bcrypt hashes the first byte C3 only. Truncate bytes, not characters.');
$bc($P['delims'], crypt($P['delims'], '$2y$10$' . $bs[1]), 'PHP password_hash(PASSWORD_BCRYPT) default cost 10 (PHP < 8.4; PHP 8.4 raised it to 12).', true, true);
$bc('Password', crypt($P['ascii'], '$2y$04$' . $bs[0]), 'INVALID: wrong password.', false);

echo json_encode([
    'php' => PHP_VERSION,
    'sodium' => SODIUM_LIBRARY_VERSION,
    'vectors' => $out,
], JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR), "\n";
