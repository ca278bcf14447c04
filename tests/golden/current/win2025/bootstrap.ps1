# hybrid Windows node bootstrap. The user data is a small
# loader that unpacks this script to C:\hybrid\bootstrap.ps1 and runs it at every boot (persisted
# user data). Each stage leaves a marker and is skipped once done - by an earlier run, or at bake
# time (hybrid bake) - so the reboot the Containers feature needs resumes at the next stage. Every
# stage writes one line to the serial console (EC2's console output): the boot timeline.
# -FromRetryTask: started by the hybrid-retry scheduled task, not by EC2Launch,
# so an exit code asks nobody for a reboot.
param([switch]$FromRetryTask)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
$Root = 'C:\hybrid'
New-Item -ItemType Directory -Force -Path $Root, 'C:\k', 'C:\var\log\kubelet' | Out-Null
# One run at a time: the retry task, a reboot's run and (EC2Launch v1) a
# second user-data task must not run stages side by side.
$Single = New-Object Threading.Mutex($false, 'Global\hybrid-bootstrap')
if (-not $Single.WaitOne(0)) { Write-Host 'hybrid: another run of the bootstrap is under way'; exit 0 }
Start-Transcript -Append -Path "$Root\bootstrap.log" | Out-Null

# node: join the cluster; bake: only the stages that do not depend on it.
$Mode = 'node'
$Cni = 'flannel'
$PauseImage = 'registry.k8s.io/pause:3.10.2'
$KubeletArgs = @('--cert-dir=C:\var\lib\kubelet\pki', '--config=C:\var\lib\kubelet\config.yaml', '--bootstrap-kubeconfig=C:\etc\kubernetes\bootstrap-kubelet.conf', '--kubeconfig=C:\etc\kubernetes\kubelet.conf', '--container-runtime-endpoint=npipe:////./pipe/containerd-containerd', '--cgroups-per-qos=false', '--enforce-node-allocatable=', '--resolv-conf=', '--enable-debugging-handlers', '--image-credential-provider-config=C:\k\credential-provider.yaml', '--image-credential-provider-bin-dir=C:\k\credential-providers', '--max-pods=110', '--register-with-taints=os=windows:NoSchedule')
$JoinConfig = '# kubeadm configuration of a Windows worker. kubelet runs as a service with
# fixed flags (labels and taints included), so only discovery and the node
# name matter to kubeadm here.
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "10.60.0.10:6443"
    token: "__HYBRID_BOOTSTRAP_TOKEN__"
    caCertHashes: ["sha256:89fc0b778f8e139c79c686c7d3fc02109290f3bfd76872a37004c8d6b87ddca1"]
nodeRegistration:
  name: "__HYBRID_NODE_NAME__"
  criSocket: "npipe:////./pipe/containerd-containerd"
  taints: [{"effect": "NoSchedule", "key": "os", "value": "windows"}]
'
$ContainerdConfig = '# containerd 2 configuration for Windows (config version 3). Only what hybrid
# changes: the pause image of this Kubernetes release and the CNI folders
# Calico''s and flannel''s Windows installers use.
version = 3

[plugins.''io.containerd.cri.v1.images''.pinned_images]
  sandbox = "registry.k8s.io/pause:3.10.2"

[plugins.''io.containerd.cri.v1.runtime''.cni]
  bin_dirs = [''C:/opt/cni/bin'']
  conf_dir = ''C:/etc/cni/net.d''
'
$Routes = @('169.254.169.254', '169.254.169.123', '169.254.169.250', '169.254.169.251', '169.254.169.253')
$Images = @('registry.k8s.io/pause:3.10.2')
# Those in a private ECR registry: the region and endpoint of the login each needs.
$EcrLogins = @{ }
$PodCidr = '192.168.0.0/16'
$CredentialProviderConfig = 'apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    defaultCacheDuration: "12h"
    matchImages:
      - "*.dkr.ecr.*.amazonaws.com"
      - "*.dkr-ecr.*.on.aws"
      - "*.dkr.ecr.*.amazonaws.com.cn"
      - "*.dkr-ecr.*.on.amazonwebservices.com.cn"
      - "*.dkr.ecr-fips.*.amazonaws.com"
'
$JoinTokenParameter = '/hybrid/current/join-token'
$Region = 'us-west-2'
$SsmEndpoint = 'https://ssm.us-west-2.amazonaws.com'
# The HNS network the CNI makes, which kube-proxy attaches to.
$KubeProxyNetwork = 'flannel.4096'
$FlannelNetConf = '{
  "Backend": {
    "Port": 4789,
    "Type": "vxlan",
    "VNI": 4096
  },
  "Network": "192.168.0.0/16"
}'
$FlannelCniConf = '{
  "cniVersion": "1.0.0",
  "name": "flannel.4096",
  "plugins": [
    {
      "capabilities": {
        "dns": true,
        "portMappings": true
      },
      "delegate": {
        "Policies": [
          {
            "Name": "EndpointPolicy",
            "Value": {
              "Settings": {
                "Exceptions": [
                  "192.168.0.0/16",
                  "10.96.0.0/12"
                ]
              },
              "Type": "OutBoundNAT"
            }
          },
          {
            "Name": "EndpointPolicy",
            "Value": {
              "Settings": {
                "DestinationPrefix": "10.96.0.0/12",
                "NeedEncap": true
              },
              "Type": "SDNRoute"
            }
          },
          {
            "Name": "EndpointPolicy",
            "Value": {
              "Settings": {
                "ProviderAddress": "__HYBRID_NODE_IP__"
              },
              "Type": "ProviderAddress"
            }
          }
        ],
        "apiVersion": 2,
        "type": "win-overlay"
      },
      "type": "flannel"
    }
  ]
}'

function Log($Message) { Write-Host "$(Get-Date -Format o) hybrid: $Message" }

# The folders of the programs this script installs. The machine's PATH
# (the registry) reaches only processes started after it changes; this
# process, and kubeadm, which it starts and whose join preflight runs
# `kubelet --version` through PATH, keep the PATH they started with. So
# every run puts them on both: its own PATH for itself and its children,
# the machine's (built from the machine's own value, never from this
# process's merged one) for what starts after a reboot. A run from a baked
# image or after the reboot needs its own PATH set just the same.
$NodePaths = @("$env:ProgramFiles\containerd\bin", 'C:\k')
function Add-NodePaths {
  $Machine = [Environment]::GetEnvironmentVariable('Path', 'Machine')
  foreach ($Dir in $NodePaths) {
    if (($env:Path -split ';') -notcontains $Dir) { $env:Path = $env:Path.TrimEnd(';') + ';' + $Dir }
    if (($Machine -split ';') -notcontains $Dir) { $Machine = $Machine.TrimEnd(';') + ';' + $Dir }
  }
  [Environment]::SetEnvironmentVariable('Path', $Machine, 'Machine')
}

# EC2's console output is the serial port, which EC2Launch also writes:
# open, write, close, and let a busy port cost a line, never the boot.
function Console($Text) {
  Log $Text
  for ($i = 0; $i -lt 3; $i++) {
    try {
      $P = New-Object System.IO.Ports.SerialPort 'COM1', 115200
      $P.Open(); $P.WriteLine($Text); $P.Close(); return
    } catch { Start-Sleep -Milliseconds 300 }
  }
}

function Timeline($Stage, $Event, $Detail = '') {
  # Invariant culture: elsewhere ':' and the digits may not be what the parser reads.
  $T = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ss.fffZ', [Globalization.CultureInfo]::InvariantCulture)
  Console ("HYBRID-TIMELINE $T $Stage $Event $Detail").TrimEnd()
}

# EC2Launch v2 (Windows Server 2022+, and 2019 AMIs built with it) reboots
# and runs the script again when it exits 3010; a Restart-Computer inside
# the script leaves its run state inconsistent. EC2Launch v1 runs persisted
# user data at every boot, so there the script restarts the machine itself.
# An agent that runs the script detached (EC2Launch v2 before 2.0.1521, or
# user data marked detach) ignores 3010: the retry task, three minutes on,
# then finds the reboot still pending and restarts the machine itself.
function Reboot($After) {
  Timeline $After reboot
  if (-not $FromRetryTask -and (Test-Path "$env:ProgramFiles\Amazon\EC2Launch\EC2Launch.exe")) {
    Register-Retry
    Stop-Transcript | Out-Null
    exit 3010
  }
  Stop-Transcript | Out-Null
  Restart-Computer -Force
  exit 0
}

function Imds($Path) {
  Retry 30 2 { Imds-Once $Path }
}

# IMDSv2: a session token first (instances are launched with tokens required).
function Imds-Once($Path) {
  $T = Invoke-RestMethod -UseBasicParsing -Method Put -Uri 'http://169.254.169.254/latest/api/token' -Headers @{ 'X-aws-ec2-metadata-token-ttl-seconds' = '300' }
  Invoke-RestMethod -UseBasicParsing -Uri "http://169.254.169.254/latest/meta-data/$Path" -Headers @{ 'X-aws-ec2-metadata-token' = $T }
}

# A file only SYSTEM and Administrators may read (by SID: the names are
# translated on other Windows languages), made so before anything is in it.
function Write-Private($Path, $Text) {
  New-Item -ItemType File -Force -Path $Path | Out-Null
  & icacls.exe $Path /inheritance:r /grant:r '*S-1-5-18:(F)' '*S-1-5-32-544:(F)' | Out-Null
  Assert-Exit "icacls $Path"
  Set-Content -Path $Path -Value $Text -Encoding Ascii
}

# SigV4 helpers. Byte arrays are returned with a leading comma: PowerShell
# would otherwise unroll them into the pipeline one byte at a time.
function Hmac([byte[]]$Key, [string]$Text) { ,([Security.Cryptography.HMACSHA256]::new($Key).ComputeHash([Text.Encoding]::UTF8.GetBytes($Text))) }
function Hex([byte[]]$Bytes) { -join ($Bytes | ForEach-Object { $_.ToString('x2') }) }
function Sha256Hex([byte[]]$Bytes) { Hex ([Security.Cryptography.SHA256]::Create().ComputeHash($Bytes)) }

# One AWS JSON-protocol call (SSM, ECR) with the instance profile's
# credentials from IMDSv2, signed with Signature Version 4 as AWS documents
# it (the same steps as the Linux nodes' fetch-secrets.py): no AWS Tools
# module, which differs between Windows Server releases and is frozen into
# a baked image. Neither the credentials nor what they fetch are logged.
function Invoke-AwsJson($Service, $Endpoint, $SigningRegion, $Target, $Json) {
  $Base = 'iam/security-credentials/'
  $Role = ([string](Imds-Once $Base)).Split("`n")[0].Trim()
  if (-not $Role) { throw 'the instance has no instance profile role yet' }
  $C = Imds-Once ($Base + $Role)
  $Payload = [Text.Encoding]::UTF8.GetBytes($Json)
  $Now = [DateTime]::UtcNow
  $AmzDate = $Now.ToString('yyyyMMddTHHmmssZ', [Globalization.CultureInfo]::InvariantCulture)
  $Day = $Now.ToString('yyyyMMdd', [Globalization.CultureInfo]::InvariantCulture)
  # Signed exactly as sent: names in lower case and sorted; Host comes
  # from the URI, Content-Type from -ContentType.
  $Signed = [ordered]@{
    'content-type' = 'application/x-amz-json-1.1'
    'host' = ([Uri]$Endpoint).Host
    'x-amz-date' = $AmzDate
    'x-amz-security-token' = $C.Token
    'x-amz-target' = $Target
  }
  $Names = @($Signed.Keys) -join ';'
  $Lines = -join (@($Signed.Keys) | ForEach-Object { $_ + ':' + $Signed[$_] + "`n" })
  $Canonical = "POST`n/`n`n" + $Lines + "`n" + $Names + "`n" + (Sha256Hex $Payload)
  $Scope = "$Day/$SigningRegion/$Service/aws4_request"
  $ToSign = "AWS4-HMAC-SHA256`n$AmzDate`n$Scope`n" + (Sha256Hex ([Text.Encoding]::UTF8.GetBytes($Canonical)))
  $Key = Hmac (Hmac (Hmac (Hmac ([Text.Encoding]::UTF8.GetBytes('AWS4' + $C.SecretAccessKey)) $Day) $SigningRegion) $Service) 'aws4_request'
  $Signature = Hex (Hmac $Key $ToSign)
  $Headers = @{
    'X-Amz-Date' = $AmzDate
    'X-Amz-Security-Token' = $C.Token
    'X-Amz-Target' = $Target
    'Authorization' = "AWS4-HMAC-SHA256 Credential=$($C.AccessKeyId)/$Scope, SignedHeaders=$Names, Signature=$Signature"
  }
  # Only the status line of a failure is kept: an error body may quote the
  # signed request, session token included, and errors reach the log and
  # the console.
  try {
    Invoke-RestMethod -UseBasicParsing -Method Post -Uri ($Endpoint + '/') -ContentType 'application/x-amz-json-1.1' -Headers $Headers -Body $Payload
  } catch {
    throw "$Target failed: $($_.Exception.Message)"
  }
}

# The join token, from the one SSM parameter this node's role may read;
# read again at every join attempt (an apply that launches nodes stores a
# fresh one).
function Get-JoinToken {
  $Value = Retry 30 10 { (Invoke-AwsJson 'ssm' $SsmEndpoint $Region 'AmazonSSM.GetParameter' ('{"Name":"' + $JoinTokenParameter + '","WithDecryption":true}')).Parameter.Value }
  # [a-z0-9]{6}.[a-z0-9]{16} and nothing else reaches the config file.
  if ([string]$Value -cnotmatch '\A[a-z0-9]{6}\.[a-z0-9]{16}\z') { throw "unexpected bootstrap token in $JoinTokenParameter" }
  [string]$Value
}

# The password of ECR's registry login (user AWS) in a region, for a bake's
# private pulls, with the builder's role.
function Get-EcrPassword($EcrRegion, $EcrEndpoint) {
  $Login = Retry 30 10 { (Invoke-AwsJson 'ecr' $EcrEndpoint $EcrRegion 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken' '{}').authorizationData[0].authorizationToken }
  $Pair = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([string]$Login))
  if (-not $Pair.StartsWith('AWS:') -or $Pair.Length -le 4) { throw 'ECR answered an unexpected login' }
  $Pair.Substring(4)
}

# Pulls an image into containerd's k8s.io namespace; one of a private ECR
# registry with a fresh login. The password is on no line the log keeps,
# but it is on ctr's command line (ctr reads it from nowhere else): only
# administrators and SYSTEM see that, and process-creation auditing (event
# 4688 with command lines, Sysmon, an EDR agent) records it. It is a
# 12-hour token for pulls from the account's registries only.
function Pull-Image($Name) {
  $Login = $EcrLogins[$Name]
  $Auth = @()
  if ($Login) { $Auth = @('--user', ('AWS:' + (Get-EcrPassword $Login[0] $Login[1]))) }
  & "$env:ProgramFiles\containerd\bin\ctr.exe" -n k8s.io images pull @Auth $Name | Out-Null
  Assert-Exit "ctr pull $Name"
}

# A required stage that failed runs the bootstrap again three minutes later
# (the loader in the user data saved it as C:\hybrid\bootstrap.ps1), up to
# ten times, and says so on the console; stages already done are skipped.
function Retry-Later($Stage, $Why) {
  $N = 1 + [int](Get-Content "$Root\attempts" -ErrorAction SilentlyContinue)
  Set-Content -Path "$Root\attempts" -Value $N
  if ($N -gt 10) { Console "hybrid: stage $Stage failed $N times, giving up: $Why"; return }
  Console "hybrid: stage $Stage failed ($Why); running the bootstrap again in 3 minutes (attempt $N of 10)"
  Register-Retry
}

function Register-Retry {
  $Action = New-ScheduledTaskAction -Execute "$PSHOME\powershell.exe" -Argument "-NoProfile -ExecutionPolicy Bypass -File $Root\bootstrap.ps1 -FromRetryTask"
  $Trigger = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(3)
  Register-ScheduledTask -Force -TaskName 'hybrid-retry' -Action $Action -Trigger $Trigger -User 'SYSTEM' -RunLevel Highest | Out-Null
}

function Stage($StageName, [scriptblock]$StageBlock, [switch]$Optional) {
  $StageMarker = Join-Path $Root "$StageName.done"
  if (Test-Path $StageMarker) { Timeline $StageName skip; return }
  Timeline $StageName start
  try { $StageResult = & $StageBlock } catch {
    $StageWhy = "$_" -replace '\s+', ' '
    Timeline $StageName fail $StageWhy
    if ($Optional) { Log "optional stage $StageName failed; continuing"; return }
    Retry-Later $StageName $StageWhy
    Stop-Transcript | Out-Null
    exit 1
  }
  New-Item -ItemType File -Force -Path $StageMarker | Out-Null
  Timeline $StageName done
  if ($StageResult -contains 'reboot') { Reboot $StageName }
}

# Retry and Stage run the caller's block inside their own scope, where a
# name of theirs would hide the caller's (names ignore case): theirs start
# with their own name, and a test holds every block to it.
function Retry([int]$RetryTimes, [int]$RetryDelay, [scriptblock]$RetryBlock) {
  for ($RetryAttempt = 1; ; $RetryAttempt++) {
    try { return & $RetryBlock } catch {
      if ($RetryAttempt -ge $RetryTimes) { throw }
      Log "attempt $RetryAttempt failed: $_"
      Start-Sleep -Seconds $RetryDelay
    }
  }
}

# Windows PowerShell 5.1 never turns a program's exit code into an error
# ($PSNativeCommandUseErrorActionPreference is PowerShell 7.3+), so a failed
# nssm, tar or ctr would pass unnoticed: these make it fail the stage.
function Assert-Exit($What) { if ($LASTEXITCODE -ne 0) { throw "$What exited with $LASTEXITCODE" } }
function Nssm { & C:\k\nssm.exe @args; Assert-Exit "nssm $($args -join ' ')" }

# An inbound firewall rule, once: a stage run again must not fail on it.
function Allow($Name, $Display, $Protocol, $Port) {
  if (-not (Get-NetFirewallRule -Name $Name -ErrorAction SilentlyContinue)) {
    New-NetFirewallRule -Name $Name -DisplayName $Display -Protocol $Protocol -LocalPort $Port -Action Allow | Out-Null
  }
}

# A service nssm runs, installed once (a stage run again finds it) to start
# only when asked: its parameters come at join, and a node from a baked
# image must not start it at boot without them. Logs rotate while it runs.
function Install-Service($Name, $Program, $Log) {
  if (-not (Get-Service $Name -ErrorAction SilentlyContinue)) { Nssm install $Name $Program }
  Nssm set $Name Start SERVICE_DEMAND_START
  Nssm set $Name AppStdout $Log
  Nssm set $Name AppStderr $Log
  Nssm set $Name AppRotateFiles 1
  Nssm set $Name AppRotateOnline 1
  Nssm set $Name AppRotateBytes 10485760
}

# The checksum a download must have, as hybrid's version table says to
# check it: sha256:<hex> | sha256-file:<url> | github-asset:<api>#<asset>.
function Get-ExpectedSum($Check) {
  if ($Check.StartsWith('sha256:')) { return $Check.Substring(7) }
  if ($Check.StartsWith('sha256-file:')) {
    $C = (Invoke-WebRequest -UseBasicParsing -Uri $Check.Substring(12)).Content
    if ($C -is [byte[]]) { $C = [Text.Encoding]::ASCII.GetString($C) }
    return ([regex]::Match($C, '[0-9a-fA-F]{64}')).Value.ToLower()
  }
  if ($Check.StartsWith('github-asset:')) {
    $Api, $Asset = $Check.Substring(13) -split '#', 2
    $R = Invoke-RestMethod -Uri $Api -Headers @{ Accept = 'application/vnd.github+json' }
    return (($R.assets | Where-Object { $_.name -eq $Asset }).digest -replace '^sha256:', '')
  }
  throw "unknown checksum kind: $Check"
}

# Downloads $Url to $Path only when its SHA-256 matches; a mismatch names
# the file, the expected and the actual sum.
function Fetch($Url, $Path, $Check) {
  Retry 10 10 { Invoke-WebRequest -UseBasicParsing -Uri $Url -OutFile "$Path.part" }
  $Expected = Retry 5 10 { Get-ExpectedSum $Check }
  $Actual = (Get-FileHash -Algorithm SHA256 "$Path.part").Hash.ToLower()
  if (-not $Expected -or $Expected -ne $Actual) {
    Remove-Item -Force "$Path.part"
    throw "checksum mismatch for ${Url}: expected $Expected, got $Actual"
  }
  Move-Item -Force "$Path.part" $Path
}

# Each run of the script (the first, after the reboot, a retry) starts here.
Timeline bootstrap start $Mode
Add-NodePaths
# The Containers feature's stage is done once it asked for its reboot; a
# run that finds the reboot still pending (its request ignored) reboots now.
if ((Test-Path "$Root\containers-feature.done") -and (Get-WindowsFeature -Name Containers).InstallState -eq 'InstallPending') { Reboot 'containers-feature' }

Stage 'containers-feature' {
  $R = Install-WindowsFeature -Name Containers
  if ($R.RestartNeeded -eq 'Yes') { 'reboot' }
}

Stage 'containerd' {
  # No Hyper-V: EC2 instances other than metal cannot run it, and Kubernetes
  # uses process isolation only (WINDOWS-NOTES §3.1).
  $Dir = "$env:ProgramFiles\containerd"
  Fetch 'https://github.com/containerd/containerd/releases/download/v2.3.6/containerd-2.3.6-windows-amd64.tar.gz' "$Root\containerd.tar.gz" 'sha256-file:https://github.com/containerd/containerd/releases/download/v2.3.6/containerd-2.3.6-windows-amd64.tar.gz.sha256sum'
  New-Item -ItemType Directory -Force -Path $Dir, 'C:\opt\cni\bin', 'C:\etc\cni\net.d' | Out-Null
  tar.exe -xzf "$Root\containerd.tar.gz" -C $Dir
  Assert-Exit 'tar (containerd)'
  Set-Content -Path "$Dir\config.toml" -Value $ContainerdConfig -Encoding Ascii
  if (-not (Get-Service containerd -ErrorAction SilentlyContinue)) {
    & "$Dir\bin\containerd.exe" --register-service --log-file 'C:\var\log\containerd.log'
    Assert-Exit 'containerd --register-service'
  }
  Start-Service containerd
}

Stage 'kubelet' {
  New-Item -ItemType Directory -Force -Path 'C:\var\lib\kubelet\etc\kubernetes', 'C:\etc\kubernetes\pki', 'C:\etc\kubernetes\manifests' | Out-Null
  if (-not (Test-Path 'C:\var\lib\kubelet\etc\kubernetes\pki')) {
    New-Item -ItemType SymbolicLink -Path 'C:\var\lib\kubelet\etc\kubernetes\pki' -Value 'C:\etc\kubernetes\pki' | Out-Null
  }
  Fetch 'https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubelet.exe' 'C:\k\kubelet.exe' 'sha256-file:https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubelet.exe.sha256'
  Fetch 'https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubeadm.exe' 'C:\k\kubeadm.exe' 'sha256-file:https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubeadm.exe.sha256'
  Fetch 'https://k8stestinfrabinaries.blob.core.windows.net/nssm-mirror/nssm-2.24.zip' "$Root\nssm.zip" 'sha256:727d1e42275c605e0f04aba98095c38a8e1e46def453cdffce42869428aa6743'
  # kubelet pulls from the account's private ECR with the node's role; the
  # plugin's name in the config is the file's without .exe (kubelet looks it
  # up as Windows does).
  New-Item -ItemType Directory -Force -Path 'C:\k\credential-providers' | Out-Null
  Fetch 'https://artifacts.k8s.io/binaries/cloud-provider-aws/v1.37.0/windows/amd64/ecr-credential-provider-windows-amd64' 'C:\k\credential-providers\ecr-credential-provider.exe' 'sha256:8a659cef454cdf9a4b47c0fd6163f635c92de6a5bc1b65b0cf9abd158fad9427'
  Set-Content -Path 'C:\k\credential-provider.yaml' -Value $CredentialProviderConfig -Encoding Ascii
  Expand-Archive -Force -Path "$Root\nssm.zip" -DestinationPath "$Root\nssm"
  # The release zip holds one folder named after its version.
  $NssmDir = 'nssm-' + '2.24'
  Copy-Item -Force -Path "$Root\nssm\$NssmDir\win64\nssm.exe" -Destination 'C:\k\nssm.exe'
  # Without parameters until the join stage writes them: on a node from a
  # baked image it would otherwise start at boot with none (holding port 10250).
  Install-Service kubelet 'C:\k\kubelet.exe' 'C:\var\log\kubelet\kubelet.log'
  Nssm set kubelet DependOnService containerd
  # kubelet, VXLAN overlay and NodePorts; Windows Firewall blocks inbound by default.
  Allow hybrid-kubelet 'kubelet (hybrid)' TCP 10250
  Allow hybrid-vxlan 'VXLAN (hybrid)' UDP '4789'
  Allow hybrid-nodeport-tcp 'NodePorts TCP (hybrid)' TCP '30000-32767'
  Allow hybrid-nodeport-udp 'NodePorts UDP (hybrid)' UDP '30000-32767'
}

# flanneld runs as a host service from its release binary: the HostProcess
# images for flannel are no longer built (sig-windows-tools PR #385/#388,
# 2025), and this is how RKE2's Windows agent runs it.
Stage 'flannel' {
  Fetch 'https://github.com/flannel-io/flannel/releases/download/v0.28.9/flannel-v0.28.9-windows-amd64.tar.gz' "$Root\flannel.tar.gz" 'github-asset:https://api.github.com/repos/flannel-io/flannel/releases/tags/v0.28.9#flannel-v0.28.9-windows-amd64.tar.gz'
  Fetch 'https://github.com/flannel-io/cni-plugin/releases/download/v1.9.1-flannel3/cni-plugin-flannel-windows-amd64-v1.9.1-flannel3.tgz' "$Root\flannel-cni.tgz" 'github-asset:https://api.github.com/repos/flannel-io/cni-plugin/releases/tags/v1.9.1-flannel3#cni-plugin-flannel-windows-amd64-v1.9.1-flannel3.tgz'
  Fetch 'https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-windows-amd64-v1.9.1.tgz' "$Root\cni-plugins.tgz" 'sha256-file:https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-windows-amd64-v1.9.1.tgz.sha256'
  New-Item -ItemType Directory -Force -Path "$Root\flannel", "$Root\flannel-cni", 'C:\etc\kube-flannel', 'C:\run\flannel' | Out-Null
  tar.exe -xzf "$Root\flannel.tar.gz" -C "$Root\flannel"
  Assert-Exit 'tar (flannel)'
  Copy-Item -Force (Get-ChildItem "$Root\flannel" -Recurse -Filter 'flanneld*.exe' | Select-Object -First 1).FullName 'C:\k\flanneld.exe'
  # The CNI type "flannel" resolves to flannel.exe, whatever the archive calls it.
  tar.exe -xzf "$Root\flannel-cni.tgz" -C "$Root\flannel-cni"
  Assert-Exit 'tar (flannel CNI)'
  Copy-Item -Force (Get-ChildItem "$Root\flannel-cni" -Recurse -Filter 'flannel*.exe' | Select-Object -First 1).FullName 'C:\opt\cni\bin\flannel.exe'
  tar.exe -xzf "$Root\cni-plugins.tgz" -C 'C:\opt\cni\bin'
  Assert-Exit 'tar (CNI plugins)'
  # Until the join stage has configured it: flanneld without
  # --kube-subnet-mgr would loop on etcd forever. No service dependency on
  # kubelet (flanneld reads kubelet.conf, a file): a running dependent would
  # keep kubeadm from restarting kubelet.
  Install-Service flanneld 'C:\k\flanneld.exe' 'C:\var\log\flanneld.log'
}

# kube-proxy runs as a host service from the Kubernetes release's
# kube-proxy.exe on both CNIs, so a new Kubernetes minor never waits for
# someone else's image (docs/windows.md). The service is not called
# kube-proxy: calico-node-windows' uninstall init container stops and
# deletes a service of that name (projectcalico/calico
# node/windows-packaging/CalicoWindows/uninstall-calico-hpc.ps1). It starts
# only once the join stage has written its start script.
Stage 'kube-proxy' {
  Fetch 'https://dl.k8s.io/v1.36.5/bin/windows/amd64/kube-proxy.exe' 'C:\k\kube-proxy.exe' 'sha256-file:https://dl.k8s.io/v1.36.5/bin/windows/amd64/kube-proxy.exe.sha256'
  Install-Service hybrid-kube-proxy "$PSHOME\powershell.exe" 'C:\var\log\kube-proxy.log'
}

Stage 'routes' {
  # Creating the HNS vSwitch (Calico or flannel) moves the node's address to
  # a new adapter and drops EC2's link-local routes (metadata, time sync,
  # KMS, DNS), and an image can carry routes to an adapter or gateway that
  # is not this node's (EC2Launch v1 writes them persistent). A task puts
  # each one on the default route's adapter and gateway, at startup and
  # every two minutes. It reads the active store, the routes Windows uses:
  # a persistent route left on an old adapter would hide a missing one.
  $Fix = @'
$Want = @(__ROUTES__)
$G = Get-NetRoute -PolicyStore ActiveStore -DestinationPrefix 0.0.0.0/0 -ErrorAction SilentlyContinue | Sort-Object RouteMetric | Select-Object -First 1
if (-not $G) { exit 0 }
foreach ($D in $Want) {
  $Have = @(Get-NetRoute -PolicyStore ActiveStore -DestinationPrefix "$D/32" -ErrorAction SilentlyContinue)
  # On the default route's adapter, through its gateway or on-link (EC2Launch v2 adds them on-link).
  if ($Have | Where-Object { $_.InterfaceIndex -eq $G.InterfaceIndex -and ($_.NextHop -eq $G.NextHop -or $_.NextHop -eq '0.0.0.0') }) { continue }
  # Missing, or stale: remove what points elsewhere (both stores), then add it on the right adapter.
  $Have | Remove-NetRoute -Confirm:$false -ErrorAction SilentlyContinue
  Get-NetRoute -PolicyStore PersistentStore -DestinationPrefix "$D/32" -ErrorAction SilentlyContinue | Remove-NetRoute -Confirm:$false -ErrorAction SilentlyContinue
  New-NetRoute -DestinationPrefix "$D/32" -InterfaceIndex $G.InterfaceIndex -NextHop $G.NextHop -RouteMetric 1 -PolicyStore ActiveStore | Out-Null
}
'@
  Set-Content -Path 'C:\k\link-local-routes.ps1' -Value $Fix.Replace('__ROUTES__', (($Routes | ForEach-Object { "'$_'" }) -join ','))
  $Action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument '-NoProfile -ExecutionPolicy Bypass -File C:\k\link-local-routes.ps1'
  $Triggers = @((New-ScheduledTaskTrigger -AtStartup), (New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Minutes 2)))
  Register-ScheduledTask -Force -TaskName 'hybrid-link-local-routes' -Action $Action -Trigger $Triggers -User 'SYSTEM' -RunLevel Highest | Out-Null
}

# Leaves the builder so that an instance from its image boots as a new one:
# its root volume extended, a new Administrator password, its own user data.
# EC2Launch v2: `reset`, inline from this user-data script (AWS's EC2Launch
# v2 settings: an inline reset takes effect at once and the agent stops
# after this task; --block, the older advice, is deprecated since 2.0.1521),
# checked by the run state it must have deleted. EC2Launch v1 (Windows
# Server 2019 AMIs built with it): InitializeInstance.ps1 -Schedule, checked
# by its scheduled task and log; the builder's own persisted-user-data task
# goes first, or a node would run it beside its own. Returns what went
# wrong, or nothing.
function Seal-Image {
  $V2 = "$env:ProgramFiles\Amazon\EC2Launch\EC2Launch.exe"
  if (Test-Path $V2) {
    & $V2 reset --clean | Out-Null
    $Rc = $LASTEXITCODE
    $State = "$env:ProgramData\Amazon\EC2Launch\state"
    $Left = @('.run-once', 'state.json', 'previous-state.json') | Where-Object { Test-Path (Join-Path $State $_) }
    if ($Rc -ne 0 -or $Left) { return "EC2Launch reset exited $Rc and left $($Left -join ', ')" }
    return $null
  }
  $V1 = 'C:\ProgramData\Amazon\EC2-Windows\Launch'
  Unregister-ScheduledTask -TaskName 'Amazon Ec2 Launch - Userdata Execution' -Confirm:$false -ErrorAction SilentlyContinue
  # Only what this run logs counts: the AMI's own build logged the line too.
  $Before = @(Get-Content "$V1\Log\Ec2Launch.log" -ErrorAction SilentlyContinue).Count
  & "$V1\Scripts\InitializeInstance.ps1" -Schedule
  $Task = Get-ScheduledTask -TaskName 'Amazon Ec2 Launch - Instance Initialization' -ErrorAction SilentlyContinue
  $Logged = @(Get-Content "$V1\Log\Ec2Launch.log" -ErrorAction SilentlyContinue | Select-Object -Skip $Before) -match 'Instance initialization is scheduled successfully'
  if (-not $Task -or $Task.State -eq 'Disabled' -or -not $Logged) { return 'EC2Launch v1 did not schedule the instance initialization' }
  return $null
}

if ($Mode -eq 'bake') {
  # Pre-pull what every node pulls on its way to Ready, then leave an image
  # whose next boot runs its own user data.
  Stage 'images' { foreach ($Image in $Images) { Retry 5 10 { Pull-Image $Image } } }
  Remove-Item -Force -ErrorAction SilentlyContinue "$Root\*.tar.gz", "$Root\*.tgz", "$Root\nssm.zip", "$Root\attempts"
  Set-Content -Path "$Root\baked.json" -Value ('{"baked":"' + (Get-Date).ToUniversalTime().ToString('o') + '"}')
  Stop-Transcript | Out-Null
  # hybrid makes an image only after `bake done` on the console: a builder
  # stopped any other way (a failed seal, a maintenance event) makes none.
  $Why = Seal-Image
  if ($Why) { Timeline bake fail $Why } else { Timeline bake done }
  Stop-Computer -Force
  exit 0
}

Stage 'join' {
  $NodeName = [string](Imds 'local-hostname')
  $NodeIp = [string](Imds 'local-ipv4')
  # The node name must be the EC2 private DNS name; refuse anything else
  # before it reaches a config file or a command line.
  if ($NodeName -notmatch '^[a-z0-9.-]+$' -or $NodeIp -notmatch '^[0-9.]+$') { throw 'unexpected instance metadata' }
  $Config = $JoinConfig.Replace('__HYBRID_NODE_NAME__', $NodeName)
  $AllArgs = $KubeletArgs + @("--hostname-override=$NodeName", "--node-ip=$NodeIp")
  Nssm set kubelet AppParameters ($AllArgs -join ' ')
  # Configured: from now on kubelet starts at boot. kubeadm join starts it.
  Nssm set kubelet Start SERVICE_AUTO_START
  # Workers boot alongside the control plane: retry until the API answers.
  # A node that has joined (kubelet.conf is written once its TLS bootstrap
  # is done) never joins again: a stage retried for a later step would
  # otherwise reset it, and the bootstrap token may be gone by then.
  # A kubelet that is running unconfigured would fail the join's preflight (port 10250).
  if (-not (Test-Path 'C:\etc\kubernetes\kubelet.conf')) { Stop-Service kubelet -ErrorAction SilentlyContinue }
  try {
  for ($i = 1; -not (Test-Path 'C:\etc\kubernetes\kubelet.conf'); $i++) {
    Write-Private 'C:\k\kubeadm-join.yaml' ($Config.Replace('__HYBRID_BOOTSTRAP_TOKEN__', (Get-JoinToken)))
    # kubeadm's own words go to the log (its errors name the failed check).
    & { $ErrorActionPreference = 'Continue'; & C:\k\kubeadm.exe join --config 'C:\k\kubeadm-join.yaml' 2>&1 | ForEach-Object { Log "kubeadm: $_" } }
    # A join that failed after the TLS bootstrap has made its node: never reset it.
    if ($LASTEXITCODE -eq 0 -or (Test-Path 'C:\etc\kubernetes\kubelet.conf')) { break }
    if ($i -ge 120) { throw "kubeadm join failed $i times" }
    Log "join attempt $i failed; retrying in 30s"
    & C:\k\kubeadm.exe reset -f | Out-Null
    Start-Sleep -Seconds 30
  }
  } finally {
    # The join token does not stay on disk, whatever happened.
    Remove-Item -Force -ErrorAction SilentlyContinue 'C:\k\kubeadm-join.yaml'
  }
  # The cluster's settings are written here, never in a stage a baked image
  # has already run: the image serves every cluster of its versions.
  Set-Content -Path 'C:\etc\kube-flannel\net-conf.json' -Value $FlannelNetConf -Encoding Ascii
  Set-Content -Path 'C:\etc\cni\net.d\10-flannel.conflist' -Value ($FlannelCniConf.Replace('__HYBRID_NODE_IP__', $NodeIp)) -Encoding Ascii
  Nssm set flanneld AppParameters "--kube-subnet-mgr --kubeconfig-file=C:\etc\kubernetes\kubelet.conf --iface=$NodeIp --net-config-path=C:\etc\kube-flannel\net-conf.json"
  Nssm set flanneld AppEnvironmentExtra "NODE_NAME=$NodeName"
  # Configured: from now on it starts at boot. Restart, not Start: a
  # running service (started unconfigured) would ignore a Start.
  Nssm set flanneld Start SERVICE_AUTO_START
  Restart-Service -Force flanneld
  # kube-proxy in overlay mode needs a source VIP from this node's pod
  # subnet, reserved with host-local under the CNI network's own name (as
  # the CNI plugin allocates pod addresses), so no pod is given it.
  $Proxy = @'
$Net = '__NETWORK__'
while (-not ($N = Get-HnsNetwork | Where-Object { $_.Name -eq $Net })) { Start-Sleep -Seconds 5 }
$VipFile = 'C:\k\source-vip.json'
if (-not (Test-Path $VipFile)) {
  $env:CNI_COMMAND = 'ADD'; $env:CNI_CONTAINERID = 'kube-proxy-source-vip'; $env:CNI_NETNS = 'none'; $env:CNI_IFNAME = 'none'; $env:CNI_PATH = 'C:\opt\cni\bin'
  $Conf = '{"cniVersion":"0.2.0","name":"' + $Net + '","ipam":{"type":"host-local","ranges":[[{"subnet":"' + $N.Subnets[0].AddressPrefix + '"}]],"dataDir":"/var/lib/cni/networks"}}'
  $Out = ($Conf | & C:\opt\cni\bin\host-local.exe) -join "`n"
  # Kept only when it holds an address: an error answer cached here would
  # start kube-proxy without a source VIP on every later start.
  $Got = $null
  try { $Got = ($Out | ConvertFrom-Json).ip4.ip } catch { }
  if (-not $Got) { Write-Output "host-local reserved no source VIP: $Out"; exit 1 }
  Set-Content -Path $VipFile -Value $Out
}
$Vip = ((Get-Content $VipFile -Raw | ConvertFrom-Json).ip4.ip -split '/')[0]
& C:\k\kube-proxy.exe --proxy-mode=kernelspace --network-name=$Net --source-vip=$Vip --hostname-override=__NODE__ --cluster-cidr=__PODS__ --kubeconfig=C:\etc\kubernetes\kubelet.conf --v=2
'@
  Set-Content -Path 'C:\k\start-kube-proxy.ps1' -Value ($Proxy.Replace('__NETWORK__', $KubeProxyNetwork).Replace('__NODE__', $NodeName).Replace('__PODS__', $PodCidr))
  Nssm set hybrid-kube-proxy AppParameters '-NoProfile -ExecutionPolicy Bypass -File C:\k\start-kube-proxy.ps1'
  Nssm set hybrid-kube-proxy Start SERVICE_AUTO_START
  Restart-Service -Force hybrid-kube-proxy
}

# Diagnostics only (`hybrid logs` reads logs over SSH, port 22 from
# admin_cidrs): after the join, and never fatal - Features on Demand can be
# out of reach behind WSUS or a proxy.
Stage 'openssh' -Optional {
  Add-WindowsCapability -Online -Name 'OpenSSH.Server~~~~0.0.1.0' | Out-Null
  Set-Service -Name sshd -StartupType Automatic
  Start-Service sshd
  # The instance's key pair, if it has one, may log in as Administrator.
  try {
    # Retried (Imds): the CNI's network may have just dropped the metadata route.
    $Key = Imds 'public-keys/0/openssh-key'
    $Auth = 'C:\ProgramData\ssh\administrators_authorized_keys'
    Set-Content -Path $Auth -Value $Key -Encoding Ascii
    icacls.exe $Auth /inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F' | Out-Null
  } catch { Log 'no key pair: SSH keys left unset' }
}

Remove-Item -Force -ErrorAction SilentlyContinue "$Root\attempts"
Unregister-ScheduledTask -TaskName 'hybrid-retry' -Confirm:$false -ErrorAction SilentlyContinue
Timeline bootstrap done
Stop-Transcript | Out-Null
