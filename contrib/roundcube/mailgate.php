<?php

/**
 * mailgate password strength driver for Roundcube's password plugin.
 *
 * Asks mailgate (POST /v1/password/check) whether a new password passes
 * the server's password policy: length, character classes, the zxcvbn
 * score, the account's name and domain, and the breached-password list.
 * mailgate's reasons are shown to the user.
 *
 * Install: copy this file to plugins/password/drivers/mailgate.php and
 * set in plugins/password/config.inc.php:
 *
 *   $config['password_strength_driver'] = 'mailgate';
 *   $config['password_minimum_score'] = 5;
 *   // mailgate's [password] check_listen (no token needed there):
 *   $config['password_mailgate_url'] = 'http://127.0.0.1:4081/v1/password/check';
 *   // Only when you point the URL at the admin API's TCP listener
 *   // ([admin] listen) instead, which needs its token:
 *   // $config['password_mailgate_token'] = '...';
 *   $config['password_mailgate_timeout'] = 5;
 *
 * Scores returned (the password plugin wants 1 to 5):
 *   5  mailgate says the password passes;
 *   1  it does not (mailgate's reasons are the message);
 *   2  mailgate could not be asked. With password_minimum_score 3 or
 *      more (5 above) no password is saved then: fail closed.
 *
 * Nothing is logged; the password only travels in the request body to
 * mailgate. Keep the URL on loopback (or behind TLS).
 *
 * Part of mailgate (docs/passwords.md). Same licence as mailgate.
 */
class rcube_mailgate_password
{
    /**
     * The rules shown above the password form: mailgate's defaults. Edit
     * them when you change [password] min_length or min_classes.
     *
     * @return array
     */
    public function strength_rules()
    {
        return [
            'At least 12 characters, from at least 3 of: lower case, upper case, digits, symbols.',
            'Not a common word, name, date or keyboard pattern, not your address, and not in a list of breached passwords.',
        ];
    }

    /**
     * Checks a password with mailgate.
     *
     * @param string $passwd The new password
     *
     * @return array Score (1 to 5) and the reason for a low score
     */
    public function check_strength($passwd)
    {
        $login = isset($_SESSION['username']) ? (string) $_SESSION['username'] : '';
        if (class_exists('rcmail')) {
            $config = rcmail::get_instance()->config;
            $url = $config->get('password_mailgate_url', 'http://127.0.0.1:4081/v1/password/check');
            $token = $config->get('password_mailgate_token', '');
            $timeout = (float) $config->get('password_mailgate_timeout', 5);
        } else {
            $url = 'http://127.0.0.1:4081/v1/password/check';
            $token = '';
            $timeout = 5.0;
        }

        $res = self::ask($url, $token, $timeout, $login, $passwd);
        if ($res === null) {
            return [2, 'The password could not be checked right now; please try again later.'];
        }
        if (!empty($res['ok'])) {
            return [5, null];
        }
        $texts = [];
        foreach ((array) ($res['reasons'] ?? []) as $r) {
            if (isset($r['text'])) {
                $texts[] = 'The password ' . $r['text'] . '.';
            }
        }
        return [1, $texts ? implode(' ', $texts) : 'The password is too weak.'];
    }

    /**
     * POSTs {"login","password"} to mailgate; returns the decoded answer,
     * or null when mailgate cannot be asked or answers an error.
     */
    public static function ask($url, $token, $timeout, $login, $passwd)
    {
        $body = json_encode(['login' => $login, 'password' => $passwd]);
        if ($body === false) {
            return null; // not UTF-8
        }
        $headers = "Content-Type: application/json\r\n";
        if ($token !== '') {
            $headers .= 'Authorization: Bearer ' . $token . "\r\n";
        }
        $ctx = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => $headers,
            'content' => $body,
            'timeout' => $timeout,
            'ignore_errors' => true,
        ]]);
        $out = @file_get_contents($url, false, $ctx);
        $body = null; // drop the password's copy
        if ($out === false || !isset($http_response_header[0])
            || !preg_match('#^HTTP/\S+ 200#', $http_response_header[0])) {
            return null;
        }
        $res = json_decode($out, true);
        return is_array($res) && array_key_exists('ok', $res) ? $res : null;
    }
}
